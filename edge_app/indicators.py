"""LED and buzzer behind one interface, with a console backend and a gpiozero backend.

Colours: green engaged, amber partially engaged or distracted, red not engaged, slow
blue blink absent, fast red blink fault. The buzzer only sounds after sustained
disengagement (``BuzzerPolicy``), never in quiet hours or when muted.
"""
from __future__ import annotations

import datetime as dt
import sys
import threading
import time

from edge_app.engagement import ABSENT, DISTRACTED

COLOURS = {
    "Engaged": (0.0, 1.0, 0.0),
    "Partially engaged": (1.0, 0.5, 0.0),
    DISTRACTED: (1.0, 0.5, 0.0),
    "Not engaged": (1.0, 0.0, 0.0),
    ABSENT: (0.0, 0.0, 1.0),
}
ABSENT_BLINK = (1.0, 1.0)  # on, off seconds: slow
FAULT_BLINK = (0.1, 0.1)  # fast
ALERT_GROUPS = ("Not engaged", DISTRACTED)


def in_quiet_hours(spec: str, now: dt.datetime) -> bool:
    """``spec`` "HH:MM-HH:MM" (may wrap midnight); empty means never quiet."""
    if not spec:
        return False
    start_s, end_s = spec.split("-")
    start = dt.time.fromisoformat(start_s)
    end = dt.time.fromisoformat(end_s)
    t = now.time()
    return start <= t < end if start <= end else (t >= start or t < end)


class BuzzerPolicy:
    """Decides when to sound: a disengaged state held ``after_s``, at most once per cooldown."""

    def __init__(self, after_s=30.0, cooldown_s=120.0, quiet_hours="", enabled=True):
        self.after_s, self.cooldown_s, self.quiet_hours, self.enabled = after_s, cooldown_s, quiet_hours, enabled
        self._last_alert = -1e18
        self._alerted_since: float | None = None

    @classmethod
    def from_config(cls, cfg: dict) -> "BuzzerPolicy":
        i = cfg["indicators"]
        return cls(i["buzzer_after_s"], i["buzzer_cooldown_s"], i["quiet_hours"], i["buzzer"])

    def should_sound(self, now: float, group: str, since: float, wall: dt.datetime | None = None) -> bool:
        """True once per disengaged stretch that lasts ``after_s``, outside cooldown and quiet hours."""
        if not self.enabled or group not in ALERT_GROUPS:
            return False
        if now - since < self.after_s or self._alerted_since == since:
            return False
        if now - self._last_alert < self.cooldown_s:
            return False
        if in_quiet_hours(self.quiet_hours, wall or dt.datetime.now()):
            return False
        self._last_alert, self._alerted_since = now, since
        return True


class Indicator:
    """Shows a state group; ``fault(True)`` overrides it with the fault pattern."""

    def show(self, group: str) -> None: ...

    def fault(self, on: bool, reason: str = "") -> None: ...

    def beep(self) -> None: ...

    def close(self) -> None: ...


class NullIndicator(Indicator):
    pass


class ConsoleIndicator(Indicator):
    """Prints what the LED and buzzer would do (laptops, the demo)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self._shown: str | None = None
        self._fault = False

    def _say(self, text: str) -> None:
        print(f"[indicator] {time.strftime('%H:%M:%S')} {text}", file=self.stream, flush=True)

    def show(self, group: str) -> None:
        if group != self._shown:
            self._shown = group
            colour = {"Engaged": "green", "Partially engaged": "amber", DISTRACTED: "amber",
                      "Not engaged": "red", ABSENT: "blue (slow blink)"}[group]
            self._say(f"LED {colour}: {group}")

    def fault(self, on: bool, reason: str = "") -> None:
        if on != self._fault:
            self._fault = on
            self._say(f"LED fast red blink: fault: {reason}" if on else "fault cleared")

    def beep(self) -> None:
        self._say("BUZZER: sustained disengagement")


class GpioIndicator(Indicator):
    """gpiozero RGB LED (or three LEDs) and buzzer; gpiozero picks lgpio/RPi.GPIO/mock."""

    def __init__(self, red=17, green=27, blue=22, buzzer=23, rgb=True, active_buzzer=True,
                 beep_s=0.3, pin_factory=None):
        from gpiozero import LED, PWMLED, RGBLED, Buzzer, TonalBuzzer

        self._rgb = rgb
        if rgb:
            self.led = RGBLED(red, green, blue, pin_factory=pin_factory)
            self._leds = None
        else:
            self.led = None
            self._leds = (PWMLED(red, pin_factory=pin_factory), PWMLED(green, pin_factory=pin_factory),
                          LED(blue, pin_factory=pin_factory))
        self.buzzer = (Buzzer(buzzer, pin_factory=pin_factory) if active_buzzer
                       else TonalBuzzer(buzzer, pin_factory=pin_factory))
        self.beep_s = beep_s
        self._group: str | None = None
        self._fault = False
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: dict, pin_factory=None) -> "GpioIndicator":
        i = cfg["indicators"]
        return cls(i["led_red_pin"], i["led_green_pin"], i["led_blue_pin"], i["buzzer_pin"], i["rgb_led"],
                   i["buzzer_active"], i["buzzer_beep_s"], pin_factory)

    def _set(self, colour, blink=None) -> None:
        if self._rgb:
            if blink:
                self.led.blink(on_time=blink[0], off_time=blink[1], on_color=colour, off_color=(0, 0, 0))
            else:
                self.led.color = colour
            return
        red, green, blue = self._leds
        for led, value in zip((red, green), colour[:2]):
            if blink and value:
                led.blink(on_time=blink[0], off_time=blink[1])
            else:
                led.value = value
        if blink and colour[2]:
            blue.blink(on_time=blink[0], off_time=blink[1])
        else:
            blue.value = bool(colour[2])

    def _render(self) -> None:
        if self._fault:
            self._set(COLOURS["Not engaged"], FAULT_BLINK)
        elif self._group == ABSENT:
            self._set(COLOURS[ABSENT], ABSENT_BLINK)
        elif self._group is not None:
            self._set(COLOURS[self._group])

    def show(self, group: str) -> None:
        with self._lock:
            if group != self._group:
                self._group = group
                self._render()

    def fault(self, on: bool, reason: str = "") -> None:
        with self._lock:
            if on != self._fault:
                self._fault = on
                self._render()

    def beep(self) -> None:
        if hasattr(self.buzzer, "beep"):
            self.buzzer.beep(on_time=self.beep_s, off_time=self.beep_s, n=2)
        else:  # TonalBuzzer: two short tones in a background thread
            def chirp():
                for _ in range(2):
                    self.buzzer.play("A5")
                    time.sleep(self.beep_s)
                    self.buzzer.stop()
                    time.sleep(self.beep_s)

            threading.Thread(target=chirp, daemon=True).start()

    def close(self) -> None:
        devices = [self.led, self.buzzer] if self._rgb else [*self._leds, self.buzzer]
        for device in devices:
            try:
                device.close()
            except Exception:
                pass


def make_indicator(cfg: dict, pin_factory=None) -> Indicator:
    backend = cfg["indicators"]["backend"]
    if backend == "gpio":
        try:
            return GpioIndicator.from_config(cfg, pin_factory)
        except ImportError:
            raise RuntimeError("indicators.backend = \"gpio\" needs gpiozero: pip install 'engage-edge[pi]'") from None
    if backend == "console":
        return ConsoleIndicator()
    return NullIndicator()
