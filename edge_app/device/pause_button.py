"""The student's privacy button on the desk: a push button from a GPIO pin to ground
(``indicators.pause_button_pin``, internal pull-up). Each press toggles the capture
loop's privacy switch; gpiozero debounces it. Only the gpiozero backend has one."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)
BOUNCE_S = 0.05


class PauseButton:
    """Presses of a gpiozero ``Button`` toggle ``switch`` (a ``runtime.privacy.PrivacySwitch``)."""

    def __init__(self, pin: int, switch, pin_factory=None):
        from gpiozero import Button

        self.switch = switch
        self.button = Button(pin, pull_up=True, bounce_time=BOUNCE_S, pin_factory=pin_factory)
        self.button.when_pressed = self._pressed

    def _pressed(self) -> None:
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
