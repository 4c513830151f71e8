"""LED and buzzer behind one interface: console, gpiozero (Raspberry Pi) and Jetson.GPIO backends.

Every state has its own look, in the web UI's colours (static/app.css), so an instructor
tells them apart across the room: green engaged, amber partially engaged, red not
engaged, teal present with an expression it cannot read (green and blue), violet
distracted (red and blue), slow grey blink (dim white) absent, slow blue
pulse paused (the student's privacy switch), fast red blink fault (no camera, model
error). The three engagement levels also differ without their colour, for the one man in
twelve who cannot tell red, amber and green apart (protan or deutan: the three are one
yellow to him): engaged is steady, partially engaged breathes slowly (never dark), not
engaged flashes twice every two seconds; a fault's fast blink is the only other blink in
red. Teal, violet and grey differ from those on the blue-yellow axis, which such eyes
keep. The buzzer only sounds after sustained disengagement (``BuzzerPolicy``), never in
quiet hours or when muted. Pins, mixes and most timings come from ``[indicators]``.

The capture loop calls ``show(group)`` on every frame: an unchanged group returns after
one comparison, so a running pattern is never restarted and no pin is touched.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edge_app.device import clock
from edge_app.engagement import ABSENT, DISTRACTED, PAUSED, PRESENT, STRETCH_BREAK_S, Group

if TYPE_CHECKING:
    from edge_app.config import Config

log = logging.getLogger(__name__)
OFF = (0.0, 0.0, 0.0)
ALERT_GROUPS = (Group.NOT_ENGAGED, DISTRACTED)
COLOUR_NAMES: dict[str, str] = {Group.ENGAGED: "green", Group.PARTIALLY_ENGAGED: "amber (slow breathe)",
                                DISTRACTED: "violet", Group.NOT_ENGAGED: "red (double flash)", PRESENT: "teal",
                                ABSENT: "grey (slow blink)", PAUSED: "blue (slow pulse)"}
FADE_FPS = 25  # PWM steps a second in a fade (gpiozero's own pulse uses 25)
Colour = tuple[float, float, float]
Step = tuple[Colour, float]  # a colour and the seconds it is held


def _mix(a: Colour, b: Colour, t: float) -> Colour:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


@dataclass(frozen=True)
class Look:
    """How the LED shows one state: a colour (RGB levels 0..1), steady, blinking (on, off
    seconds; ``flashes`` of them, then ``rest`` seconds more dark) or pulsing (fade in, fade
    out seconds, down to ``floor`` of the colour; a blink where there is no PWM)."""

    colour: Colour
    blink: tuple[float, float] | None = None
    pulse: tuple[float, float] | None = None
    flashes: int = 1
    rest: float = 0.0
    floor: float = 0.0

    def steps(self, pwm: bool = True) -> tuple[Step, ...]:
        """One period of the pattern as colours held for seconds, from its brightest (on the
        pins as soon as a state is shown), repeated; none for a steady light. Without PWM a
        pulse to dark is a blink, and one that never goes dark (a breathe) stays on with a
        short dark wink, so it is neither steady nor a blink of its own."""
        c = self.colour
        if self.pulse:
            fade_in, fade_out = self.pulse
            if not pwm:
                if self.floor > 0:
                    period = fade_in + fade_out
                    return ((c, period * 0.85), (OFF, period * 0.15))
                return ((c, fade_in), (OFF, fade_out))
            low = (c[0] * self.floor, c[1] * self.floor, c[2] * self.floor)
            n_out, n_in = max(1, round(fade_out * FADE_FPS)), max(1, round(fade_in * FADE_FPS))
            return (tuple((_mix(c, low, i / n_out), fade_out / n_out) for i in range(n_out))
                    + tuple((_mix(low, c, i / n_in), fade_in / n_in) for i in range(n_in)))
        if self.blink:
            on, off = self.blink
            return ((c, on), (OFF, off)) * (self.flashes - 1) + ((c, on), (OFF, off + self.rest))
        return ()

    def period(self) -> float:
        """Seconds until the pattern repeats; 0 for a steady light."""
        return sum(seconds for _, seconds in self.steps())


@dataclass(frozen=True)
class Patterns:
    """What each state looks like: RGB levels 0..1 and (on, off) blink seconds."""

    amber_green: float = 0.4
    brightness: float = 1.0
    absent_blink: tuple[float, float] = (1.0, 1.0)  # slow
    fault_blink: tuple[float, float] = (0.1, 0.1)  # fast
    violet_red: float = 0.5
    grey_level: float = 0.3
    paused_pulse: tuple[float, float] = (1.0, 1.0)
    teal_green: float = 0.6  # "Present": blue with this much green, apart from blue (paused) and green
    # the engagement levels' own patterns, not only hues (red, amber and green are one yellow to a
    # protan or deutan eye): "Partially engaged" breathes between full and a fifth over 4 s (calm,
    # never dark, so not the paused pulse nor a blink), "Not engaged" flashes twice every 2 s (not the
    # absent 1 s blink nor the fault's 5 Hz one); "Engaged" stays steady
    partial_breathe: tuple[float, float] = (2.0, 2.0)
    breathe_floor: float = 0.2
    not_engaged_flash: tuple[float, float] = (0.2, 0.3)
    not_engaged_rest: float = 1.0

    @classmethod
    def from_config(cls, cfg: Config) -> "Patterns":
        i = cfg.indicators
        return cls(i.amber_green, i.brightness, (i.absent_blink_on_s, i.absent_blink_off_s),
                   (i.fault_blink_on_s, i.fault_blink_off_s), i.violet_red, i.grey_level,
                   (i.paused_pulse_s / 2, i.paused_pulse_s / 2), i.teal_green)

    def colour(self, group: str) -> tuple[float, float, float]:
        b = self.brightness
        grey = b * self.grey_level
        colours: dict[str, tuple[float, float, float]] = {
            Group.ENGAGED: (0.0, b, 0.0), Group.PARTIALLY_ENGAGED: (b, b * self.amber_green, 0.0),
            DISTRACTED: (b * self.violet_red, 0.0, b), Group.NOT_ENGAGED: (b, 0.0, 0.0), ABSENT: (grey, grey, grey),
            PRESENT: (0.0, b * self.teal_green, b),
            PAUSED: (0.0, 0.0, b)}
        return colours[group]

    def look_of(self, group: str | None, fault: bool) -> Look:
        """The look of a state; the fault pattern overrides every state."""
        if fault:
            return Look((self.brightness, 0.0, 0.0), blink=self.fault_blink)
        if group is None:
            return Look(OFF)
        if group == ABSENT:
            return Look(self.colour(ABSENT), blink=self.absent_blink)
        if group == PAUSED:
            return Look(self.colour(PAUSED), pulse=self.paused_pulse)
        if group == Group.PARTIALLY_ENGAGED:
            return Look(self.colour(group), pulse=self.partial_breathe, floor=self.breathe_floor)
        if group == Group.NOT_ENGAGED:
            return Look(self.colour(group), blink=self.not_engaged_flash, flashes=2, rest=self.not_engaged_rest)
        return Look(self.colour(group))


def in_quiet_hours(spec: str, now: dt.datetime) -> bool:
    """``spec`` "HH:MM-HH:MM" (may wrap midnight); empty means never quiet."""
    if not spec:
        return False
    start_s, end_s = spec.split("-")
    start = dt.time.fromisoformat(start_s)
    end = dt.time.fromisoformat(end_s)
    t = now.time()
    return start <= t < end if start <= end else (t >= start or t < end)


# Other states for buzzer_after_s (at most STRETCH_BREAK_S) end a disengaged stretch; a shorter break
# (a 3 s glance up) does not, so it cannot buy a student a fresh alert: 40 s sad and 3 s neutral, over
# and over, buzzed every cooldown (10 times in 20 minutes). Back for as long as it takes to alert
# is a return, not a glance; an alert at once (buzzer_after_s = 0) has no break to bridge.
@dataclass
class AlertMemory:
    """What ``BuzzerPolicy`` remembers between frames: owned by the capture loop's thread,
    kept across settings changes (a new policy does not restart the cooldown).

    ``stretch_since``: when the current disengaged stretch began. A student moving between
    "Not engaged" and "Distracted" (looking down, then away) is disengaged all along; each
    level's own ``since`` restarts at every move, so timing that never reached ``after_s``
    and the buzzer never sounded. Other states for ``after_s`` (at most ``STRETCH_BREAK_S``)
    end the stretch; a shorter break is not counted in it (``break_s``: a pause is not disengagement) and does
    not end it, so a stretch is alerted, and logged, once however often the student glances
    up. (The classroom view's "Needs attention", ``fleet.classroom.desk.Desk.stretch``,
    likewise bridges breaks shorter than ``engagement.STRETCH_BREAK_S``.)"""

    last_alert: float = -1e18
    alerted_since: float | None = None  # the stretch that was alerted (its start)
    stretch_since: float | None = None
    break_since: float | None = None  # when the stretch's current break (other states) began
    break_s: float = 0.0  # the stretch's earlier breaks, which do not count towards after_s


_unsynchronized_said = False  # the quiet-hours warning below, once until the clock is set


@dataclass(frozen=True)
class BuzzerPolicy:
    """Decides when an alert is due (a disengaged state held ``after_s``, once per
    disengaged stretch, at most once per cooldown) and whether it may sound: never in
    quiet hours or when muted (``enabled``). Muting silences the buzzer, not the record:
    a due alert is logged (and its frame kept, if an admin turned that on) either way.

    Quiet hours are judged on the device's clock, which on a Pi without a battery-backed
    clock is wrong until a time server sets it (it may boot at 14:00 at 3 a.m.): while
    ``clock_set`` (default ``clock.synchronized``) says it is not set, a policy with quiet
    hours stays quiet, as in them. None (a system that cannot tell) trusts the clock, as
    the retention purge does.

    Immutable: new settings are a new policy; what it remembers lives in ``AlertMemory``."""

    after_s: float = 30.0
    cooldown_s: float = 120.0
    quiet_hours: str = ""
    enabled: bool = True
    clock_set: Callable[[], bool | None] | None = field(default=None, compare=False)

    @classmethod
    def from_config(cls, cfg: "Config", clock_set: Callable[[], bool | None] | None = None) -> "BuzzerPolicy":
        i = cfg.indicators
        return cls(i.buzzer_after_s, i.buzzer_cooldown_s, i.quiet_hours, i.buzzer, clock_set)

    def alert_due(self, now: float, group: str, since: float, memory: AlertMemory) -> bool:
        """True once per disengaged stretch (alert levels in any mix, from the first one's
        ``since``, through breaks shorter than ``after_s`` or a minute) with ``after_s`` on alert
        levels, outside the cooldown; called on every frame, it records the stretch and the
        alert in ``memory``."""
        if group not in ALERT_GROUPS:
            if memory.stretch_since is not None:
                if memory.break_since is None:
                    memory.break_since = min(since, now)
                if now - memory.break_since >= min(self.after_s, STRETCH_BREAK_S):
                    memory.stretch_since = memory.break_since = None
            return False
        if memory.break_since is not None:  # back within the break: the same stretch
            memory.break_s += max(0.0, since - memory.break_since)
            memory.break_since = None
        if memory.stretch_since is None:
            memory.stretch_since, memory.break_s = since, 0.0
        began = memory.stretch_since
        if now - began - memory.break_s < self.after_s or memory.alerted_since == began:
            return False
        if now - memory.last_alert < self.cooldown_s:
            return False
        memory.last_alert, memory.alerted_since = now, began
        return True

    def may_sound(self, wall: dt.datetime | None = None) -> bool:
        """The buzzer is on and ``wall`` (the device's clock, known to be set) is outside quiet hours."""
        global _unsynchronized_said
        if not self.enabled:
            return False
        if not self.quiet_hours:
            return True
        if (self.clock_set or clock.synchronized)() is False:
            if not _unsynchronized_said:
                _unsynchronized_said = True
                log.warning("buzzer kept quiet: indicators.quiet_hours = %r, and %s, so whether it is quiet "
                            "hours is unknown (alerts are still recorded); %s", self.quiet_hours,
                            clock.UNSYNCHRONIZED, clock.WHAT_TO_DO)
            return False
        _unsynchronized_said = False
        return not in_quiet_hours(self.quiet_hours, wall or dt.datetime.now())


class Indicator:
    """Shows a state group; ``fault(True)`` overrides it with the fault pattern."""

    def show(self, group: str) -> None: ...

    def fault(self, on: bool, reason: str = "") -> None: ...

    def beep(self, wait: bool = False) -> None:
        """Two short beeps, in the background (``wait``: return once they are over)."""

    def close(self) -> None: ...


class NullIndicator(Indicator):
    pass


class ConsoleIndicator(Indicator):
    """Prints what the LED and buzzer would do (laptops, the demo). On standard output that
    is not a terminal (a service's journal, a pipe) only faults are printed: each state
    change with its time is a record about a student, and the journal keeps it beyond
    ``store.retention_days``. A stream passed in gets everything."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.states = stream is not None or _a_terminal(self.stream)
        self._shown: str | None = None
        self._fault = False

    def _say(self, text: str) -> None:
        print(f"[indicator] {time.strftime('%H:%M:%S')} {text}", file=self.stream, flush=True)

    def show(self, group: str) -> None:
        if group != self._shown:
            self._shown = group
            if self.states:
                self._say(f"LED {COLOUR_NAMES[group]}: {group}")

    def fault(self, on: bool, reason: str = "") -> None:
        if on != self._fault:
            self._fault = on
            self._say(f"LED fast red blink: fault: {reason}" if on else "fault cleared")

    def beep(self, wait: bool = False) -> None:
        if self.states:
            self._say("BUZZER: sustained disengagement")


def _run(chirp, wait: bool) -> None:
    """``chirp`` in a thread of its own (the capture loop must not wait), or here with ``wait``."""
    if wait:
        chirp()
    else:
        threading.Thread(target=chirp, name="buzzer", daemon=True).start()


def _a_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class _PatternIndicator(Indicator):
    """State bookkeeping and the pattern thread shared by the hardware backends; they
    implement ``_write`` (one colour on the pins) and say whether they have ``pwm``."""

    pwm = True

    def __init__(self, patterns: Patterns):
        self.patterns = patterns
        self._group: str | None = None
        self._fault = False
        self._lock = threading.Lock()
        self._blink: tuple[threading.Event, threading.Thread] | None = None

    def _write(self, colour: Colour) -> None:
        raise NotImplementedError

    def _stop_blink(self) -> None:
        """End the running pattern and wait for its thread, so no write of the old pattern
        can land after the new colour (the thread only ever waits or writes: it ends at once)."""
        if self._blink is not None:
            stop, thread = self._blink
            self._blink = None
            stop.set()
            thread.join()

    def _apply(self, look: Look) -> None:
        """``look`` on the pins: its first step before this returns, the rest in a thread."""
        steps = look.steps(self.pwm)
        self._stop_blink()
        self._write(steps[0][0] if steps else look.colour)
        if not steps:
            return
        stop = threading.Event()

        def run():
            i = 0
            while not stop.wait(steps[i][1]):
                i = (i + 1) % len(steps)
                try:
                    self._write(steps[i][0])
                except Exception as exc:  # noqa: BLE001 - pins closed under it (a stop): nothing left to show
                    log.debug("LED pattern ended: %s", exc)
                    return

        thread = threading.Thread(target=run, name="led-blink", daemon=True)
        self._blink = (stop, thread)
        thread.start()

    def _render(self) -> None:
        self._apply(self.patterns.look_of(self._group, self._fault))

    def show(self, group: str) -> None:
        if group == self._group:  # every frame: nothing to do, the blink keeps running
            return
        with self._lock:
            if group != self._group:
                self._group = group
                if not self._fault:
                    self._render()

    def fault(self, on: bool, reason: str = "") -> None:
        if on == self._fault:
            return
        with self._lock:
            if on != self._fault:
                self._fault = on
                self._render()


class GpioIndicator(_PatternIndicator):
    """gpiozero RGB LED (or three LEDs) and buzzer; gpiozero picks lgpio/RPi.GPIO/mock.

    Every channel is PWM, so amber is red plus some green, violet half red plus blue, grey
    all three dimmed, "Paused" fades blue in and out and "Partially engaged" breathes. One
    common-cathode RGB LED (``rgb_led = true``) and three separate LEDs (``false``) get the
    same three signals: gpiozero's ``RGBLED`` drives any three pins, and every pattern keeps
    each level, so on three LEDs the levels differ by which LEDs light (red; red and a dimmer
    green; green) as well as by pattern."""

    def __init__(self, red=17, green=27, blue=22, buzzer=23, active_buzzer=True,
                 beep_s=0.3, pin_factory=None, patterns: Patterns | None = None):
        from gpiozero import RGBLED, Buzzer, TonalBuzzer

        super().__init__(patterns or Patterns())
        self.led: Any = RGBLED(red, green, blue, pin_factory=pin_factory)
        self.buzzer = (Buzzer(buzzer, pin_factory=pin_factory) if active_buzzer
                       else TonalBuzzer(buzzer, pin_factory=pin_factory))
        self.beep_s = beep_s

    @classmethod
    def from_config(cls, cfg: Config, pin_factory=None) -> "GpioIndicator":
        i = cfg.indicators
        return cls(i.led_red_pin, i.led_green_pin, i.led_blue_pin, i.buzzer_pin,
                   i.buzzer_active, i.buzzer_beep_s, pin_factory, Patterns.from_config(cfg))

    def _write(self, colour: Colour) -> None:
        self.led.color = colour

    def beep(self, wait: bool = False) -> None:
        if hasattr(self.buzzer, "beep"):
            self.buzzer.beep(on_time=self.beep_s, off_time=self.beep_s, n=2, background=not wait)
        else:  # TonalBuzzer (passive): two short tones in a background thread
            def chirp():
                for _ in range(2):
                    self.buzzer.play("A5")
                    time.sleep(self.beep_s)
                    self.buzzer.stop()
                    time.sleep(self.beep_s)

            _run(chirp, wait)

    def close(self) -> None:
        with self._lock:
            self._stop_blink()
        for device in (self.led, self.buzzer):
            try:
                device.close()
            except Exception:
                pass


class JetsonIndicator(_PatternIndicator):
    """The same LED and buzzer on a Jetson's 40-pin header through Jetson.GPIO (gpiozero
    does not run there). Pins are BCM numbers, as on a Pi (Jetson.GPIO maps them to the
    same header positions). The header pins used have no PWM, so a channel is on or off:
    amber is red and green fully on, violet red and blue, grey white, and the "Paused"
    pulse a slow blue blink and the "Partially engaged" breathe a light that winks dark;
    patterns and beeping run in a background thread.
    Only an active buzzer is supported. ``output(pin, bool)`` replaces Jetson.GPIO (tests)."""

    pwm = False

    def __init__(self, red=17, green=27, blue=22, buzzer=23, beep_s=0.3, patterns: Patterns | None = None,
                 output=None):
        super().__init__(patterns or Patterns())
        self.pins = (red, green, blue)
        self.buzzer_pin = buzzer
        self.beep_s = beep_s
        self._gpio = None
        if output is None:
            try:
                import Jetson.GPIO as GPIO  # lazily: Jetson only
            except ImportError:
                raise ImportError("indicators.backend = \"jetson\" needs Jetson.GPIO: pip install 'engage-edge[jetson]'") from None
            GPIO.setwarnings(False)
            GPIO.setmode(GPIO.BCM)
            GPIO.setup([*self.pins, buzzer], GPIO.OUT, initial=GPIO.LOW)
            self._gpio = GPIO
            output = lambda pin, on: GPIO.output(pin, GPIO.HIGH if on else GPIO.LOW)  # noqa: E731
        self.output = output
        self._out_lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: Config, output=None) -> "JetsonIndicator":
        i = cfg.indicators
        if not i.buzzer_active:
            log.warning("Jetson backend drives an active buzzer only; a passive one will just click")
        return cls(i.led_red_pin, i.led_green_pin, i.led_blue_pin, i.buzzer_pin, i.buzzer_beep_s,
                   Patterns.from_config(cfg), output)

    def _write(self, colour: Colour) -> None:
        with self._out_lock:
            for pin, level in zip(self.pins, colour):
                self.output(pin, level > 0)

    def beep(self, wait: bool = False) -> None:
        def chirp():
            for _ in range(2):
                self.output(self.buzzer_pin, True)
                time.sleep(self.beep_s)
                self.output(self.buzzer_pin, False)
                time.sleep(self.beep_s)

        _run(chirp, wait)

    def close(self) -> None:
        with self._lock:
            self._stop_blink()
        try:
            self._write(OFF)
            self.output(self.buzzer_pin, False)
            if self._gpio is not None:
                self._gpio.cleanup([*self.pins, self.buzzer_pin])
        except Exception:
            pass


class IndicatorError(RuntimeError):
    """The configured LED/buzzer backend cannot drive its pins here (the message says why)."""


LGPIO_PIPES = ".lgd-nfy"  # lgpio's notification pipe files, made in its working folder


def _lgpio_folder(cfg: Config) -> Path | None:
    """A folder this user may write: the data folder (the service's own), else a private one in /tmp."""
    from edge_app.config import data_dir

    data = data_dir(cfg)
    if data.is_dir() and os.access(data, os.W_OK | os.X_OK):
        return data
    private = Path(tempfile.gettempdir()) / f"engage-edge-lgpio-{os.getuid()}"
    try:
        private.mkdir(mode=0o700, exist_ok=True)
        if private.stat().st_uid == os.getuid() and os.access(private, os.W_OK | os.X_OK):
            return private
    except OSError:
        pass
    return None


def prepare_lgpio(cfg: Config) -> None:
    """Load lgpio with a working folder this user may write, before gpiozero picks a pin driver.

    lgpio makes its notification pipe (``.lgd-nfy<N>``) in its working folder, ``LG_WD`` or
    else the current one (gpiozero issue #1106): a self-test run as the service user from a
    technician's home folder failed its LED check. An ``LG_WD`` already set is kept. lgpio
    also changes the process's current folder to it; that is undone, so relative paths
    (``--source clip.mp4``) still mean what the user typed."""
    if "lgpio" in sys.modules:
        return
    if not os.environ.get("LG_WD"):
        folder = _lgpio_folder(cfg)
        if folder is not None:
            os.environ["LG_WD"] = str(folder)
    try:
        cwd: str | None = os.getcwd()
    except OSError:  # a folder deleted under the shell: nothing to come back to
        cwd = None
    try:
        import lgpio  # noqa: F401  (it reads LG_WD once, when loaded)
    except Exception:  # not installed, not a Pi, or no pipe: gpiozero tries it again and says why
        pass
    finally:
        if cwd is not None:
            try:
                os.chdir(cwd)
            except OSError:
                pass


def _no_pin_driver(tried: str) -> str:
    """What to do when gpiozero found no pin driver; why lgpio failed when it names its pipe."""
    if LGPIO_PIPES in tried:
        folder = os.environ.get("LG_WD") or "the current folder"
        return (f"indicators.backend = \"gpio\": lgpio could not make its notification pipe ({LGPIO_PIPES}*) in its "
                f"working folder {folder} ({tried}): set LG_WD to a folder this user may write (the service's data "
                "folder, e.g. LG_WD=/var/lib/engage-edge) or run the command from one")
    return (f"indicators.backend = \"gpio\": gpiozero found no GPIO pin driver it can use ({tried}): "
            "on a Raspberry Pi install python3-lgpio (apt) and add the service user to the gpio group; on "
            "another machine set indicators.backend = \"console\" or \"none\"")


def make_indicator(cfg: Config, pin_factory=None) -> Indicator:
    backend = cfg.indicators.backend
    if backend == "gpio":
        if pin_factory is None:
            prepare_lgpio(cfg)
        # gpiozero warns once per pin driver it falls back from: passed on when a driver then
        # works (why lgpio was passed over), folded into the one message when none does (8
        # lines of warnings came before the line that says what to do)
        caught: list[warnings.WarningMessage] = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                return GpioIndicator.from_config(cfg, pin_factory)
        except ImportError as exc:
            tried = "; ".join(str(w.message).removeprefix("Falling back from ") for w in caught
                              if type(w.message).__name__ == "PinFactoryFallback")
            caught = [w for w in caught if type(w.message).__name__ != "PinFactoryFallback"]
            if (getattr(exc, "name", None) or "").split(".")[0] != "gpiozero":  # it is there; no pin driver it can use
                raise IndicatorError(_no_pin_driver(tried or str(exc))) from None
            raise IndicatorError("indicators.backend = \"gpio\" needs gpiozero: pip install 'engage-edge[pi]'") from None
        finally:
            for w in caught:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if backend == "jetson":
        try:
            return JetsonIndicator.from_config(cfg)
        except ImportError as exc:
            raise IndicatorError(str(exc)) from None
    if backend == "console":
        return ConsoleIndicator()
    return NullIndicator()
