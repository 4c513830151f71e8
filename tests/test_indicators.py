"""LED and buzzer at pin level with gpiozero's own MockFactory (PWM pins), and the buzzer policy.

Every state has a look of its own, in the web UI's colours (issue 13, item 8)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import sys
import threading
import time
import warnings

import pytest
from conftest import stays, wait_for
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge_app import config as config_mod
from edge_app.device.indicators import (
    AlertMemory,
    BuzzerPolicy,
    GpioIndicator,
    IndicatorError,
    JetsonIndicator,
    Look,
    Patterns,
    in_quiet_hours,
    make_indicator,
)
from edge_app.engagement import ABSENT, DISTRACTED, PAUSED, PRESENT, Group

RED, GREEN, BLUE, BUZZER = 17, 27, 22, 23


@pytest.fixture
def factory():
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


def gpio_cfg(tmp_path, **changes) -> config_mod.Config:
    empty = tmp_path / "c.toml"
    empty.write_text("# defaults\n")
    return config_mod.load(empty, {"indicators.backend": "gpio", "store.data_dir": str(tmp_path / "d"),
                                   **{f"indicators.{k}": v for k, v in changes.items()}})


def levels(factory) -> tuple[float, float, float]:
    return tuple(round(float(factory.pin(p).state), 3) for p in (RED, GREEN, BLUE))


def transitions(pin, since: int = 0) -> list:
    """(seconds since the previous change, new state) from ``since`` on."""
    return [(s.timestamp, float(s.state)) for s in pin.states[since:]]


def changes_after(pin, start: int, n: int) -> list:
    """Wait until ``pin`` has changed ``n`` times since ``start``; its transitions."""
    wait_for(lambda: len(pin.states) - start >= n, what=f"{n} changes of {pin}")
    return transitions(pin, start)


def check_blink(changes: list, on_s: float, off_s: float, on_level: float = 1.0, minimum: int = 4) -> None:
    """The pin alternated between on_level and 0 with about on_s / off_s between changes.

    gpiozero's blink thread waits each period out relative to the last change, so a busy
    machine makes a change late, never early: a gap may run over by a scheduling delay
    (0.2 s seen on a loaded 2-core CI machine, 0.22 s with other jobs beside the suite, 0.42 s
    with the whole suite on four workers there: 1 s allowed; a blink that stops never changes
    at all, which the callers' waits catch) but not fall short, which is what a blink
    restarted by every frame's show() does."""
    assert len(changes) >= minimum, changes
    for (_, prev), (gap, value) in zip(changes, changes[1:]):
        assert value in (0.0, on_level) and value != prev, changes
        expected = on_s if prev == on_level else off_s  # how long the previous state lasted
        assert expected - min(0.03, expected * 0.5) < gap < expected + max(1.0, expected * 0.5), (gap, expected, changes)


@pytest.mark.parametrize("group, expected", [
    ("Engaged", (0.0, 1.0, 0.0)),
    ("Partially engaged", (1.0, 0.4, 0.0)),  # amber: PWM duty 40 % on green
    (DISTRACTED, (0.5, 0.0, 1.0)),  # violet: half red plus blue, not amber like "Partially engaged"
    ("Not engaged", (1.0, 0.0, 0.0)),
])
def test_steady_colours_on_the_rgb_led(factory, tmp_path, group, expected):
    ind = GpioIndicator.from_config(gpio_cfg(tmp_path), pin_factory=factory)
    assert levels(factory) == (0.0, 0.0, 0.0)
    ind.show(group)
    assert levels(factory) == expected
    ind.close()


def test_amber_and_brightness_come_from_the_config(factory, tmp_path):
    ind = GpioIndicator.from_config(gpio_cfg(tmp_path, amber_green=0.25, brightness=0.5), pin_factory=factory)
    ind.show("Partially engaged")
    assert levels(factory) == (0.5, 0.125, 0.0)
    ind.close()


def test_absent_is_a_slow_grey_blink(factory, tmp_path):
    ind = GpioIndicator.from_config(gpio_cfg(tmp_path, absent_blink_on_s=0.15, absent_blink_off_s=0.1),
                                    pin_factory=factory)
    ind.show("Engaged")
    pins = [factory.pin(p) for p in (RED, GREEN, BLUE)]
    starts = [len(p.states) for p in pins]
    ind.show(ABSENT)
    for pin, start in zip(pins, starts):  # dim white: all three channels at the grey level, blinking together
        check_blink(changes_after(pin, start, 5), 0.15, 0.1, on_level=0.3)
    ind.close()


def test_paused_is_a_slow_blue_pulse(factory, tmp_path):
    """The privacy switch's look: blue fading in and out (levels between off and on, which
    no blink has), red and green dark."""
    ind = GpioIndicator.from_config(gpio_cfg(tmp_path, paused_pulse_s=0.4), pin_factory=factory)
    ind.show("Engaged")
    blue = factory.pin(BLUE)
    start = len(blue.states)
    ind.show(PAUSED)
    wait_for(lambda: sum(1 for _, v in transitions(blue, start) if 0.05 < v < 0.95) >= 10
             and any(v > 0.9 for _, v in transitions(blue, start)), what="blue fading up and down")
    assert factory.pin(RED).state == 0 and factory.pin(GREEN).state == 0
    ind.close()


def look_on_pins(factory, ind, group, window=1.5) -> frozenset:
    """Every (r, g, b) the pins showed for ``group`` over ``window`` seconds, as levels
    rounded to a tenth: a steady colour is one triple, a blink two, a pulse many."""
    seen: set = set()
    ind.show(group)
    end = time.monotonic() + window
    while time.monotonic() < end:  # observing the pins over a time, not waiting for anything
        seen.add(tuple(round(v, 1) for v in levels(factory)))
        time.sleep(0.01)
    return frozenset(seen)


def test_every_state_looks_different_on_the_led(factory, tmp_path):
    """An instructor tells each state apart: no two states share the colours the pins go
    through, but "Not engaged" and the fault (both red and dark), which differ in rhythm
    (test_not_engaged_flashes_twice_then_rests)."""
    ind = GpioIndicator(pin_factory=factory, patterns=FAST)
    looks = {g: look_on_pins(factory, ind, g) for g in Group}
    ind.fault(True)
    looks["fault"] = look_on_pins(factory, ind, Group.ENGAGED)
    ind.close()
    for a in looks:
        for b in looks:
            if a != b and {a, b} != {Group.NOT_ENGAGED, "fault"}:
                assert looks[a] != looks[b], (a, b, looks[a])
    assert looks[Group.NOT_ENGAGED] == looks["fault"] == {(1.0, 0.0, 0.0), (0.0, 0.0, 0.0)}
    assert len({next(iter(v)) for g, v in looks.items() if len(v) == 1}) == 3  # green, teal and violet steady


# the patterns at a tenth of their length, so a test sees several periods in a second
FAST = Patterns(absent_blink=(0.1, 0.1), paused_pulse=(0.15, 0.15), partial_breathe=(0.2, 0.2),
                not_engaged_flash=(0.02, 0.03), not_engaged_rest=0.1)
LOOKS = [*Group, "fault"]
# Machado et al. 2009, severity 1, on linear RGB: how a protan and a deutan eye (together one man in
# twelve) see a colour
CVD = {"protan": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216), (-0.003882, -0.048116, 1.051998)),
       "deutan": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881))}


def rhythm(look: Look, pwm: bool) -> tuple:
    """A look without its hue: how bright (a share of its brightest) for how long, one period."""
    peak = max(look.colour)
    return tuple((round(max(c) / peak, 2), round(s, 3)) for c, s in look.steps(pwm))


def seen_by(kind: str, colour) -> tuple[float, ...]:
    """The chromaticity (r, g, b summing to 1) a colour-blind eye of ``kind`` sees."""
    sim = [max(0.0, sum(m * c for m, c in zip(row, colour))) for row in CVD[kind]]
    return tuple(v / sum(sim) for v in sim)


@pytest.mark.parametrize("pwm", [True, False], ids=["gpio", "jetson"])
def test_the_engagement_levels_differ_without_their_hue(pwm):
    """Green, amber and red are one yellow to a protan or deutan eye (hue differences of
    0.002 to 0.035 under the simulation), and the fault was red like "Not engaged": the
    three levels and the fault each have a rhythm no other state has, and the states
    that share one (steady, or a blink) are far apart for those eyes too."""
    patterns = Patterns()
    looks = {g: patterns.look_of(None if g == "fault" else g, g == "fault") for g in LOOKS}
    rhythms = {g: rhythm(look, pwm) for g, look in looks.items()}
    for level in (Group.ENGAGED, Group.PARTIALLY_ENGAGED, Group.NOT_ENGAGED, "fault"):
        assert [g for g in LOOKS if rhythms[g] == rhythms[level]] == [level] or level == Group.ENGAGED, level
    assert [g for g in LOOKS if rhythms[g] == ()] == [Group.ENGAGED, Group.PRESENT, Group.DISTRACTED]
    for a in LOOKS:
        for b in LOOKS[LOOKS.index(a) + 1:]:
            if rhythms[a] == rhythms[b]:
                for kind in CVD:
                    ca, cb = seen_by(kind, looks[a].colour), seen_by(kind, looks[b].colour)
                    distance = sum((x - y) ** 2 for x, y in zip(ca, cb)) ** 0.5
                    assert distance > 0.15, (kind, a, b, distance)


def test_not_engaged_flashes_twice_then_rests(factory, tmp_path):
    """Two short red flashes, then dark: on the pin, on and off times of 0.02, 0.03, 0.02,
    0.13 s (FAST), repeated; the fault's blink is even (0.1, 0.1)."""
    ind = GpioIndicator(pin_factory=factory, patterns=FAST)
    red = factory.pin(RED)
    start = len(red.states)
    ind.show(Group.NOT_ENGAGED)
    changes = changes_after(red, start, 18)
    ind.close()
    assert [v for _, v in changes[:17]] == [1.0, 0.0] * 8 + [1.0]
    gaps = [gap for gap, _ in changes[1:17]]  # how long each previous state lasted: on, off, on, rest, ...
    for gap, expected in zip(gaps, [0.02, 0.03, 0.02, 0.13] * 4):
        assert expected - 0.01 < gap < expected + 1.0, (gaps, expected)
    # the rest is longer than the flashes' gap: a busy machine only makes a gap late, never early,
    # so the shortest of each kind is the pattern's own (the longest may be a scheduling delay)
    assert min(gaps[3::4]) > min(gaps[1::4]) + 0.05, gaps
    assert factory.pin(GREEN).state == 0 and factory.pin(BLUE).state == 0


def test_partially_engaged_breathes_and_is_never_dark(factory, tmp_path):
    """Amber fading between full and a fifth: levels in between, which no blink has, and
    never off, which the paused pulse is; green keeps amber's share of red."""
    ind = GpioIndicator(pin_factory=factory, patterns=FAST)
    red, green = factory.pin(RED), factory.pin(GREEN)
    start, green_start = len(red.states), len(green.states)
    ind.show(Group.PARTIALLY_ENGAGED)
    wait_for(lambda: sum(1 for _, v in transitions(red, start) if 0.25 < v < 0.95) >= 10
             and [v for _, v in transitions(red, start)].count(1.0) >= 2, what="red breathing up and down twice")
    ind.close()
    reds = [v for _, v in transitions(red, start)][:-1]  # the last is close() turning it off
    assert min(reds) == pytest.approx(0.2, abs=0.05) and max(reds) == 1.0
    greens = [v for _, v in transitions(green, green_start)][:-1]
    assert max(greens) == pytest.approx(0.4) and min(greens) == pytest.approx(0.08, abs=0.03)


def test_jetson_breathe_is_a_wink_not_a_blink(factory, tmp_path):
    """No PWM: "Partially engaged" stays on and goes dark briefly (0.34 s on, 0.06 s off at
    FAST), not the even blink of "Absent" or "Paused"."""
    pins = {n: factory.pin(n) for n in (RED, GREEN, BLUE, BUZZER)}
    for p in pins.values():
        p.function = "output"

    def output(number, on):
        pins[number].state = on

    ind = JetsonIndicator(output=output, patterns=FAST)
    start = len(pins[RED].states)
    ind.show(Group.PARTIALLY_ENGAGED)
    assert levels(factory) == (1.0, 1.0, 0.0)
    changes = changes_after(pins[RED], start, 6)
    ind.close()
    for (_, prev), (gap, _) in zip(changes, changes[1:6]):
        expected = 0.34 if prev == 1.0 else 0.06
        assert expected - 0.01 < gap < expected + 1.0, (changes, expected)


def css_colour(group: Group) -> tuple[float, float, float]:
    """The colour of ``group``'s badge in the web UI's stylesheet (the .g-<group> class's variable)."""
    import re
    from pathlib import Path

    import edge_app.web

    css = (Path(edge_app.web.__file__).parent / "static" / "app.css").read_text()
    var = re.search(r"\." + group.css_class + r" \{ background:var\((--[a-z-]+)\)", css).group(1)
    hex_ = re.search(var + r":#([0-9a-fA-F]{6})", css).group(1)
    return tuple(int(hex_[i:i + 2], 16) / 255 for i in (0, 2, 4))


@pytest.mark.parametrize("group", list(Group))
def test_the_led_shows_the_web_uis_colour(group):
    """Same hue as the state's badge in the web UI (within 30 degrees), and grey where the
    badge is grey: the LED and the page speak one colour language."""
    import colorsys

    from edge_app.device.indicators import Patterns

    led_h, led_s, _ = colorsys.rgb_to_hsv(*Patterns().colour(group))
    web_h, web_s, _ = colorsys.rgb_to_hsv(*css_colour(group))
    if web_s < 0.3:
        assert led_s < 0.3, (group, led_s)
        return
    distance = abs(led_h - web_h) * 360
    assert min(distance, 360 - distance) <= 30, (group, led_h * 360, web_h * 360)
    assert led_s > 0.6


def test_pause_button_toggles_the_privacy_switch(factory, tmp_path):
    """A press (pin pulled to ground) pauses, the next one resumes."""
    from edge_app.device.pause_button import pause_button_for
    from edge_app.runtime.privacy import PrivacySwitch

    switch = PrivacySwitch()
    button = pause_button_for(gpio_cfg(tmp_path, pause_button_pin=5), switch, pin_factory=factory)
    ticks = iter(range(100))
    button.clock = lambda: float(next(ticks))  # a press a second after the last: not chatter (REPRESS_S)
    pin = factory.pin(5)
    assert switch.active is None
    pin.drive_low()
    wait_for(lambda: switch.active is not None, what="paused by the press")
    assert switch.active.by == "button"
    pin.drive_high()
    pin.drive_low()
    wait_for(lambda: switch.active is None, what="resumed by the second press")
    button.close()
    assert pause_button_for(gpio_cfg(tmp_path), switch, pin_factory=factory) is None  # -1: no button


def test_fault_is_a_fast_red_blink_that_overrides_and_then_restores(factory, tmp_path):
    ind = GpioIndicator.from_config(gpio_cfg(tmp_path), pin_factory=factory)  # default fault blink 0.1/0.1
    ind.show("Engaged")
    red = factory.pin(RED)
    start = len(red.states)
    ind.fault(True, "no camera")
    ind.show(DISTRACTED)  # the state changes under the fault: still the fault pattern
    check_blink(changes_after(red, start, 7), 0.1, 0.1, minimum=6)
    assert factory.pin(GREEN).state == 0
    ind.fault(False)
    # the state that arrived during the fault, steady: no blink left over (one blink is 0.2 s)
    assert stays(lambda: levels(factory) == (0.5, 0.0, 1.0), 0.3)
    ind.close()


def test_show_every_frame_never_restarts_a_blink_or_touches_pins(factory, tmp_path):
    ind = GpioIndicator.from_config(gpio_cfg(tmp_path, absent_blink_on_s=0.1, absent_blink_off_s=0.1),
                                    pin_factory=factory)
    ind.show("Engaged")
    green_changes = len(factory.pin(GREEN).states)
    for _ in range(2000):
        ind.show("Engaged")
    assert len(factory.pin(GREEN).states) == green_changes
    blue = factory.pin(BLUE)
    start = len(blue.states)
    ind.show(ABSENT)

    def shown_until_blinked():  # as the capture loop does, many times per blink
        ind.show(ABSENT)
        return len(blue.states) - start >= 6

    wait_for(shown_until_blinked, every=0.002)
    check_blink(transitions(blue, start), 0.1, 0.1, on_level=0.3, minimum=5)
    ind.close()


def test_three_separate_leds(factory, tmp_path):
    ind = GpioIndicator.from_config(gpio_cfg(tmp_path, rgb_led=False, absent_blink_on_s=0.1, absent_blink_off_s=0.1),
                                    pin_factory=factory)
    ind.show("Partially engaged")
    assert levels(factory) == (1.0, 0.4, 0.0)
    ind.show("Engaged")
    assert levels(factory) == (0.0, 1.0, 0.0)
    ind.show(DISTRACTED)
    assert levels(factory) == (0.5, 0.0, 1.0)
    blue = factory.pin(BLUE)
    start = len(blue.states)
    ind.show(ABSENT)
    check_blink(changes_after(blue, start, 5), 0.1, 0.1, on_level=0.3)
    ind.close()


def test_active_buzzer_beeps_twice(factory, tmp_path):
    ind = GpioIndicator.from_config(gpio_cfg(tmp_path, buzzer_beep_s=0.05), pin_factory=factory)
    pin = factory.pin(BUZZER)
    start = len(pin.states)
    ind.beep()
    changes = changes_after(pin, start, 4)
    assert stays(lambda: len(pin.states) - start == 4, 0.15)  # two beeps, then silence
    assert [v for _, v in changes] == [1.0, 0.0, 1.0, 0.0]
    check_blink(changes, 0.05, 0.05, minimum=4)
    ind.close()


class ToneRecordingPin(MockPWMPin):
    """gpiozero's PWM mock pin, remembering every frequency set (the tone is gone once
    the buzzer stops)."""

    def __init__(self, factory, info):
        super().__init__(factory, info)
        self.frequencies: list[float | None] = []

    def _set_frequency(self, value):
        super()._set_frequency(value)
        self.frequencies.append(value)


def test_passive_buzzer_plays_a_tone(tmp_path):
    factory = MockFactory(pin_class=ToneRecordingPin)
    ind = GpioIndicator.from_config(gpio_cfg(tmp_path, buzzer_active=False, buzzer_beep_s=0.05), pin_factory=factory)
    pin = factory.pin(BUZZER)
    start, set_before = len(pin.states), len(pin.frequencies)
    ind.beep()
    wait_for(lambda: [v for _, v in transitions(pin, start)].count(0.5) == 2 and pin.state == 0,
             what="two tones, then silence")
    assert stays(lambda: pin.state == 0, 0.15)
    values = [v for _, v in transitions(pin, start)]
    assert values.count(0.5) == 2 and values[-1] == 0.0  # two tones at 50 % duty, then silence
    tones = [f for f in pin.frequencies[set_before:] if f]
    assert len(tones) == 2 and tones == pytest.approx([880, 880], rel=0.01)  # A5, twice
    ind.close()
    factory.reset()


def test_jetson_backend_drives_the_same_pins(factory, tmp_path):
    pins = {n: factory.pin(n) for n in (RED, GREEN, BLUE, BUZZER)}
    for p in pins.values():
        p.function = "output"

    def output(number, on):
        pins[number].state = on

    cfg = gpio_cfg(tmp_path, absent_blink_on_s=0.1, absent_blink_off_s=0.1, buzzer_beep_s=0.05)
    ind = JetsonIndicator.from_config(cfg, output=output)
    ind.show("Partially engaged")
    assert levels(factory) == (1.0, 1.0, 0.0)  # no PWM on those header pins: red + green
    ind.show("Engaged")
    assert levels(factory) == (0.0, 1.0, 0.0)
    ind.show(DISTRACTED)
    assert levels(factory) == (1.0, 0.0, 1.0)  # violet without PWM: red + blue
    start = len(pins[BLUE].states)
    ind.show(ABSENT)

    def shown_until_blinked():  # as the capture loop does, many times per blink, until it has blinked
        ind.show(ABSENT)
        return len(pins[BLUE].states) - start >= 4

    wait_for(shown_until_blinked, every=0.002, what="blue blinking under show() every frame")
    check_blink(transitions(pins[BLUE], start), 0.1, 0.1)
    assert len(pins[RED].states) > 3  # grey without PWM: white, so red blinks too
    ind.fault(True)
    assert levels(factory) == (1.0, 0.0, 0.0)  # the fault colour is on the pins when fault() returns
    ind.fault(False)

    def beeps() -> list:
        return [v for _, v in transitions(pins[BUZZER], start)]

    start = len(pins[BUZZER].states)
    ind.beep()
    wait_for(lambda: len(beeps()) >= 4, what="two beeps on the buzzer pin")
    assert stays(lambda: len(beeps()) == 4, 0.15)  # two beeps, and no more
    assert beeps() == [1.0, 0.0, 1.0, 0.0]
    ind.close()
    assert levels(factory) == (0.0, 0.0, 0.0)


def test_jetson_joins_the_old_blink_before_a_new_colour(factory, tmp_path):
    """A blink thread caught in the middle of a slow pin write must not overwrite the new
    colour afterwards: the indicator waits for it before showing the next state."""
    pins = {n: factory.pin(n) for n in (RED, GREEN, BLUE, BUZZER)}
    for p in pins.values():
        p.function = "output"
    in_write = threading.Event()
    slow: list[threading.Thread] = []

    def output(number, on):
        if threading.current_thread().name == "led-blink" and not slow:
            slow.append(threading.current_thread())
            in_write.set()
            threading.Event().wait(0.3)  # a slow GPIO write (one, bounded), not a synchronisation
        pins[number].state = on

    cfg = gpio_cfg(tmp_path, absent_blink_on_s=0.05, absent_blink_off_s=0.05)
    ind = JetsonIndicator.from_config(cfg, output=output)
    ind.show(ABSENT)
    assert levels(factory) == (1.0, 1.0, 1.0)  # the first phase (grey: white without PWM) is written by show() itself
    assert in_write.wait(5)  # the blink thread is now inside a pin write
    ind.show("Engaged")
    assert not slow[0].is_alive()  # joined: it can write nothing more
    assert levels(factory) == (0.0, 1.0, 0.0)
    ind.fault(True)
    ind.show(DISTRACTED)
    ind.fault(False)
    assert levels(factory) == (1.0, 0.0, 1.0)
    assert not [t for t in threading.enumerate() if t.name == "led-blink"]
    ind.close()
    assert levels(factory) == (0.0, 0.0, 0.0)


def test_jetson_close_ends_the_blink_thread(factory, tmp_path):
    pins = {n: factory.pin(n) for n in (RED, GREEN, BLUE, BUZZER)}
    for p in pins.values():
        p.function = "output"

    def output(number, on):
        pins[number].state = on

    ind = JetsonIndicator.from_config(gpio_cfg(tmp_path), output=output)
    before = set(threading.enumerate())
    ind.fault(True)
    blinking = [t for t in threading.enumerate() if t.name == "led-blink" and t not in before]
    assert len(blinking) == 1
    ind.close()
    assert not blinking[0].is_alive()
    assert levels(factory) == (0.0, 0.0, 0.0)


def test_stopping_the_appliance_turns_the_led_off_and_releases_the_pins(factory, make_appliance, cfg):
    ind = GpioIndicator.from_config(config_mod.with_changes(cfg, {"indicators.backend": "gpio"}), pin_factory=factory)
    app = make_appliance(cfg, indicator=ind)
    wait_for(lambda: levels(factory) != (0.0, 0.0, 0.0))  # the loop shows a state
    app.stop()
    assert ind.led.closed and ind.buzzer.closed
    assert levels(factory) == (0.0, 0.0, 0.0)


def test_jetson_backend_without_jetson_gpio_says_what_to_install(tmp_path):
    cfg = config_mod.with_changes(gpio_cfg(tmp_path), {"indicators.backend": "jetson"})
    with pytest.raises(RuntimeError, match=r"engage-edge\[jetson\]"):
        make_indicator(cfg)


def test_gpio_without_a_pin_driver_is_one_message_not_a_screen_of_warnings(tmp_path, monkeypatch):
    """No pin driver (not a Pi, lgpio missing): gpiozero's four PinFactoryFallback warnings
    (8 lines) came before the line that says what to do; their reasons are now in it."""
    from gpiozero import Device

    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(Device, "pin_factory", None)  # gpiozero's own search, as on a device
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with pytest.raises(IndicatorError) as err:
            make_indicator(gpio_cfg(tmp_path))
    assert [str(w.message) for w in shown if "Falling back" in str(w.message)] == []
    assert "found no GPIO pin driver it can use (lgpio: " in str(err.value) and "python3-lgpio" in str(err.value)


def test_config_accepts_jetson_and_checks_patterns(tmp_path):
    assert config_mod.load(None, {"indicators.backend": "jetson"}).indicators.backend == "jetson"
    with pytest.raises(config_mod.ConfigError, match="indicators.amber_green"):
        config_mod.load(None, {"indicators.amber_green": 1.5})
    with pytest.raises(config_mod.ConfigError, match="indicators.fault_blink_on_s"):
        config_mod.load(None, {"indicators.fault_blink_on_s": 0.0})


# ------------------------------------------------------------------ buzzer policy
NOON = dt.datetime(2026, 3, 2, 12, 0)


def test_buzzer_waits_for_sustained_disengagement():
    p, m = BuzzerPolicy(after_s=30, cooldown_s=120), AlertMemory()
    assert not p.alert_due(129.9, "Not engaged", since=100, memory=m)
    assert p.alert_due(130.0, "Not engaged", since=100, memory=m)
    assert not p.alert_due(131.0, "Not engaged", since=100, memory=m)  # once per stretch
    assert not p.alert_due(1000.0, "Not engaged", since=100, memory=m)
    for group in ("Engaged", "Partially engaged", ABSENT):
        assert not BuzzerPolicy(after_s=0).alert_due(1000.0, group, since=0, memory=AlertMemory())
    assert BuzzerPolicy(after_s=30).alert_due(40.0, DISTRACTED, since=5, memory=AlertMemory())


def test_buzzer_cooldown_between_stretches():
    p, m = BuzzerPolicy(after_s=10, cooldown_s=120), AlertMemory()
    assert p.alert_due(20, "Not engaged", since=10, memory=m)
    assert not p.alert_due(80, "Engaged", since=20, memory=m)  # a minute engaged: the stretch ends
    assert not p.alert_due(100, DISTRACTED, since=80, memory=m)  # a new stretch, inside the cooldown
    assert p.alert_due(141, DISTRACTED, since=80, memory=m)  # cooldown over


def test_moving_between_alert_levels_is_one_stretch():
    """Looking down ("Not engaged"), then away ("Distracted"), every 20 s: each level's own
    ``since`` never reached 30 s, so a student disengaged for minutes never set the buzzer
    off. The stretch is timed from its first alert level, and alerted once."""
    p, m = BuzzerPolicy(after_s=30, cooldown_s=0), AlertMemory()
    due = [t for t in range(100, 400) if p.alert_due(float(t), ("Not engaged", DISTRACTED)[(t - 100) // 20 % 2],
                                                      since=float(t - (t - 100) % 20), memory=m)]
    assert due == [130]
    assert not p.alert_due(400, "Partially engaged", since=400, memory=m)  # a minute outside the alert levels ends it
    assert not p.alert_due(460, "Partially engaged", since=400, memory=m)
    assert not p.alert_due(480, DISTRACTED, since=470, memory=m)
    assert p.alert_due(500, "Not engaged", since=490, memory=m)  # the new stretch, from 470
    for other in ("Engaged", PRESENT, ABSENT, PAUSED):
        m = AlertMemory()
        assert not p.alert_due(10, "Not engaged", since=0, memory=m)
        assert not p.alert_due(90, other, since=20, memory=m)  # 70 s of it: the stretch is over
        assert not p.alert_due(115, DISTRACTED, since=91, memory=m), other  # 24 s in this stretch


def test_a_glance_up_does_not_start_a_new_stretch():
    """40 s sad, 3 s neutral, over and over for 20 minutes: each glance up ended the
    stretch, so the buzzer sounded every cooldown (10 times). A break shorter than
    after_s (at most a minute) is part of the stretch (alerted once) and not counted in it."""
    p, m = BuzzerPolicy(after_s=30, cooldown_s=120), AlertMemory()
    due = []
    for t in range(0, 1200):  # one frame a second
        cycle, at = divmod(t, 43)
        group, since = ("Not engaged", cycle * 43) if at < 40 else ("Engaged", cycle * 43 + 40)
        if p.alert_due(float(t), group, since=float(since), memory=m):
            due.append(t)
    assert due == [30]
    for t in range(1200, 1261):  # back for a minute (30 s would do): the stretch is over
        assert not p.alert_due(float(t), "Engaged", since=1200.0, memory=m)
    assert not p.alert_due(1290, "Not engaged", since=1261, memory=m)
    assert p.alert_due(1291, "Not engaged", since=1261, memory=m)  # a new stretch, 30 s in


def test_a_break_does_not_count_towards_the_alert():
    """20 s disengaged, 25 s paused (the student's privacy switch), 9 s disengaged: one
    stretch, but 29 s of it disengaged, so no alert yet; the 30th second alerts."""
    p, m = BuzzerPolicy(after_s=30, cooldown_s=0), AlertMemory()
    assert not p.alert_due(19, "Not engaged", since=0, memory=m)
    assert not p.alert_due(44, PAUSED, since=20, memory=m)
    assert not p.alert_due(54, DISTRACTED, since=45, memory=m)
    assert p.alert_due(55, DISTRACTED, since=45, memory=m)
    assert not p.alert_due(56, "Not engaged", since=56, memory=m)  # once per stretch
    assert not p.alert_due(86, "Engaged", since=56, memory=m)  # 30 s back (after_s): a return, not a glance
    assert p.alert_due(117, "Not engaged", since=87, memory=m)  # a new stretch
    at_once, m = BuzzerPolicy(after_s=0, cooldown_s=0), AlertMemory()  # no break to bridge
    assert at_once.alert_due(1, "Not engaged", since=1, memory=m) and not at_once.alert_due(2, ABSENT, since=2, memory=m)
    assert at_once.alert_due(3, "Not engaged", since=3, memory=m)


def test_a_new_policy_keeps_the_memory_and_never_changes():
    """Settings arrive as a new policy; the cooldown and "once per stretch" carry over."""
    old, m = BuzzerPolicy(after_s=10, cooldown_s=120), AlertMemory()
    assert old.alert_due(20, "Not engaged", since=10, memory=m)
    new = BuzzerPolicy(after_s=5, cooldown_s=100)
    assert not new.alert_due(21, "Not engaged", since=10, memory=m)  # same stretch: once
    assert not new.alert_due(90, "Engaged", since=30, memory=m)  # a minute engaged ends it
    assert not new.alert_due(119, DISTRACTED, since=95, memory=m)  # inside the new cooldown
    assert new.alert_due(121, DISTRACTED, since=95, memory=m)  # the old one's ran to 140
    with pytest.raises(dataclasses.FrozenInstanceError):
        old.after_s = 0  # type: ignore[misc]
    assert old == BuzzerPolicy(after_s=10, cooldown_s=120)


@pytest.mark.parametrize("hhmm, quiet", [("21:59", False), ("22:00", True), ("23:30", True), ("00:00", True),
                                         ("06:59", True), ("07:00", False), ("12:00", False)])
def test_quiet_hours_across_midnight(hhmm, quiet):
    wall = dt.datetime.combine(NOON.date(), dt.time.fromisoformat(hhmm))
    assert in_quiet_hours("22:00-07:00", wall) is quiet
    p = BuzzerPolicy(after_s=1, cooldown_s=0, quiet_hours="22:00-07:00", clock_set=lambda: True)
    assert p.may_sound(wall) is (not quiet)
    assert p.alert_due(10, "Not engaged", since=0, memory=AlertMemory())  # quiet or not: the alert is due


def test_quiet_hours_wait_for_a_clock_a_time_server_has_set(caplog, monkeypatch):
    """A Pi without a battery-backed clock boots at whatever time it last saved: quiet
    hours judged on it could buzz at night. Until a time server has set the clock, a
    policy with quiet hours stays quiet (the alert is still due, so recorded), and says
    why once; without quiet hours the clock does not matter."""
    import logging

    from edge_app.device import indicators

    monkeypatch.setattr(indicators, "_unsynchronized_said", False)  # said already by another test's loop
    synced = {"now": False}
    p = BuzzerPolicy(after_s=1, cooldown_s=0, quiet_hours="22:00-07:00", clock_set=lambda: synced["now"])
    with caplog.at_level(logging.WARNING, logger="edge_app.device.indicators"):
        assert not p.may_sound(NOON) and not p.may_sound(NOON)  # noon by a clock nobody has set
        assert p.alert_due(10, "Not engaged", since=0, memory=AlertMemory())
        said = [r.getMessage() for r in caplog.records if "quiet" in r.getMessage()]
        assert len(said) == 1 and "no time server has set the clock" in said[0], said
        synced["now"] = True
        assert p.may_sound(NOON) and not p.may_sound(NOON.replace(hour=23))
    assert BuzzerPolicy(quiet_hours="", clock_set=lambda: False).may_sound(NOON)
    assert BuzzerPolicy(quiet_hours="22:00-07:00", clock_set=lambda: None).may_sound(NOON)  # cannot tell: trusted


def test_the_loops_policy_asks_the_kernel_whether_the_clock_is_set(monkeypatch, tmp_path):
    """A policy built from the config (the capture loop's) asks ``clock.synchronized``."""
    from edge_app.device import clock

    policy = BuzzerPolicy.from_config(gpio_cfg(tmp_path, quiet_hours="22:00-07:00"))
    monkeypatch.setattr(clock, "synchronized", lambda: False)
    assert not policy.may_sound(NOON)
    monkeypatch.setattr(clock, "synchronized", lambda: True)
    assert policy.may_sound(NOON)


def test_quiet_hours_within_a_day_and_mute():
    assert in_quiet_hours("12:00-13:00", NOON) and not in_quiet_hours("12:00-13:00", NOON.replace(hour=13))
    assert not in_quiet_hours("", NOON)
    muted = BuzzerPolicy(after_s=0, cooldown_s=0, enabled=False)
    assert not muted.may_sound(NOON) and muted.alert_due(1000, "Not engaged", since=0, memory=AlertMemory())


def test_policy_from_config_drives_the_buzzer_pin(factory, tmp_path):
    cfg = gpio_cfg(tmp_path, buzzer_after_s=5.0, buzzer_cooldown_s=60.0, buzzer_beep_s=0.03)
    ind = GpioIndicator.from_config(cfg, pin_factory=factory)
    policy, memory = BuzzerPolicy.from_config(cfg), AlertMemory()
    pin = factory.pin(BUZZER)
    start = len(pin.states)
    for t in range(0, 20):  # a simulated stretch of "Not engaged" from t=0, one frame a second
        ind.show("Not engaged")
        if policy.alert_due(float(t), "Not engaged", since=0.0, memory=memory) and policy.may_sound(NOON):
            assert t == 5
            ind.beep()
    assert [v for _, v in changes_after(pin, start, 4)] == [1.0, 0.0, 1.0, 0.0]
    muted = BuzzerPolicy.from_config(config_mod.with_changes(cfg, {"indicators.buzzer": False}))
    assert not muted.may_sound(NOON)
    ind.close()


def test_the_console_led_keeps_student_states_out_of_a_journal(capsys):
    """The console backend printed every state change with its time; under systemd its
    output is the journal, which store.retention_days does not bound. Not on a terminal
    (here pytest's captured stdout), only faults are printed; a stream given gets all."""
    import io

    from edge_app.device.indicators import ConsoleIndicator

    journal = ConsoleIndicator()
    journal.show("Not engaged")
    journal.beep()
    journal.fault(True, "camera gone")
    out = capsys.readouterr().out
    assert "Not engaged" not in out and "BUZZER" not in out and "fault: camera gone" in out
    given = io.StringIO()
    shown = ConsoleIndicator(given)
    shown.show("Not engaged")
    shown.beep()
    assert "LED red (double flash): Not engaged" in given.getvalue() and "BUZZER" in given.getvalue()


# lgpio is not installed here: this stand-in does at import what lg does (reads LG_WD, else
# the current folder; moves there; opens its pipe there, failing as the real one does, with
# the handle -3, where the folder cannot take it), so gpiozero's own driver search runs over it
LGPIO_PROBE = '''
import os
import sys
import types
first = "_lgpio" not in sys.modules  # lg's C library: loaded once, its folder fixed then
wd = os.environ.get("LG_WD") or os.getcwd()
with open({seen!r}, "a") as f:
    f.write(wd + "\\n")
if first:
    sys.modules["_lgpio"] = types.ModuleType("_lgpio")
    try:
        os.chdir(wd)
    except OSError:
        pass
if not (os.path.isdir(wd) and os.access(wd, os.W_OK)):
    raise FileNotFoundError(2, "No such file or directory", ".lgd-nfy-3")
raise RuntimeError("not a Raspberry Pi")
'''


@pytest.fixture
def lgpio_probe(tmp_path, monkeypatch):
    from gpiozero import Device

    seen = tmp_path / "lgpio-saw"
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "lgpio.py").write_text(LGPIO_PROBE.format(seen=str(seen)))
    monkeypatch.syspath_prepend(str(probe))
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.delenv("LG_WD", raising=False)
    monkeypatch.setattr(Device, "pin_factory", None)
    start = tmp_path / "technicians-home"  # where a technician ran the command from
    start.mkdir()
    monkeypatch.chdir(start)
    yield seen
    assert "lgpio" not in sys.modules
    sys.modules.pop("_lgpio", None)


def test_lgpio_makes_its_pipe_in_the_data_folder_not_where_the_command_was_run(tmp_path, lgpio_probe):
    """`runuser -u engage -- engage-edge selftest` from /home/...: lgpio made its .lgd-nfy
    pipe in the current folder, which the service user may not write, and the LED check
    failed. It now loads with LG_WD at the data folder; the current folder stays the user's."""
    cfg = gpio_cfg(tmp_path)
    (tmp_path / "d").mkdir()
    with warnings.catch_warnings(), pytest.raises(IndicatorError) as err:
        warnings.simplefilter("ignore")
        make_indicator(cfg)
    assert lgpio_probe.read_text().splitlines()[0] == str(tmp_path / "d")
    assert os.getcwd() == str(tmp_path / "technicians-home")
    assert "python3-lgpio" in str(err.value)  # this stand-in is no Pi: the usual advice


def test_an_lgpio_pipe_that_cannot_be_made_names_the_folder_not_a_package_to_install(tmp_path, lgpio_probe, monkeypatch):
    """The failure said to install python3-lgpio and join the gpio group: both done, wrong advice."""
    monkeypatch.setenv("LG_WD", str(tmp_path / "gone"))  # the user's own setting is kept
    with warnings.catch_warnings(), pytest.raises(IndicatorError) as err:
        warnings.simplefilter("ignore")
        make_indicator(gpio_cfg(tmp_path))
    assert lgpio_probe.read_text().splitlines()[0] == str(tmp_path / "gone")
    said = str(err.value)
    assert ".lgd-nfy" in said and f"working folder {tmp_path / 'gone'}" in said and "set LG_WD to a folder" in said
    assert "python3-lgpio" not in said


@pytest.mark.parametrize("synced", [True, False])
def test_the_devices_loop_asks_the_appliances_clock_before_quiet_hours(cfg, make_appliance, synced):
    """Quiet hours wait for a clock a time server has set; the loop is told by the appliance
    (as the retention purge is), and keeps it through a settings change."""
    now = dt.datetime.now()
    later = f"{(now + dt.timedelta(hours=2)):%H:00}-{(now + dt.timedelta(hours=3)):%H:00}"  # not now
    appliance = make_appliance(config_mod.with_changes(cfg, {"indicators.quiet_hours": later}),
                               clock_set=lambda: synced)
    assert appliance.loop.rules.buzzer.may_sound() is synced
    appliance.loop.apply_config(appliance.cfg)
    assert appliance.loop.rules.buzzer.may_sound() is synced
