"""The student's privacy button on the desk: a push button from a GPIO pin to ground
(``indicators.pause_button_pin``, internal pull-up). Each press toggles the capture
loop's privacy switch; gpiozero debounces it, and a press right after a toggle is
ignored. Only the gpiozero backend has one."""
from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)
BOUNCE_S = 0.05
# A press this soon after the last toggle toggles nothing: a chattering switch (or a quick
# double press: low 20 ms, high 30 ms, low 20 ms) got past the 50 ms debounce, resumed and
# paused again within 0.1 s, the camera live in between and "Absent" logged between two
# "Paused". Half a second is longer than any bounce and shorter than a deliberate second press.
REPRESS_S = 0.5


class PauseButton:
    """Presses of a gpiozero ``Button`` toggle ``switch`` (a ``runtime.privacy.PrivacySwitch``)."""

    def __init__(self, pin: int, switch, pin_factory=None, clock=time.monotonic):
        from gpiozero import Button

        self.switch, self.clock = switch, clock
        self._toggled: float | None = None  # when the last press toggled the switch (``clock``)
        self.button = Button(pin, pull_up=True, bounce_time=BOUNCE_S, pin_factory=pin_factory)
        self.button.when_pressed = self._pressed

    def _pressed(self) -> None:
        now = self.clock()
        if self._toggled is not None and now - self._toggled < REPRESS_S:
            log.debug("privacy button: a press %.2f s after the last toggle ignored (chatter)", now - self._toggled)
            return
        self._toggled = now
        pause = self.switch.toggle("button")
        log.info("privacy button: %s", "paused" if pause else "resumed")

    def close(self) -> None:
        self.button.close()


def pause_button_for(cfg, switch, pin_factory=None) -> PauseButton | None:
    """The configured button, or None (no pin, or a backend without gpiozero)."""
    i = cfg.indicators
    if i.pause_button_pin < 0:
        return None
    if i.backend != "gpio":
        log.warning("indicators.pause_button_pin is set but only the gpio backend reads a button "
                    "(backend is %r): use the web page's Pause camera button", i.backend)
        return None
    if pin_factory is None:
        from edge_app.device.indicators import prepare_lgpio

        prepare_lgpio(cfg)  # as for the LED: lgpio's pipe in a folder this user may write
    return PauseButton(i.pause_button_pin, switch, pin_factory)
