"""Configuration: one TOML file with documented defaults, validated at start-up.

The shipped ``default_config.toml`` is the schema: every key, its type and its default.
A user file only overrides keys; unknown keys and wrong values raise ``ConfigError``
naming the key, the value and what is allowed.
"""
from __future__ import annotations

import copy
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

DEVICE_CONFIG = Path("/etc/engage-edge/config.toml")
LEVEL_GROUPS = ("Engaged", "Partially engaged", "Not engaged")
QUIET_HOURS = re.compile(r"^$|^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")

# Extra rules beyond "same type as the default": (check, what is allowed).
_RULES: dict[str, tuple[Any, str]] = {
    "camera.width": (lambda v: 16 <= v <= 4096, "an integer from 16 to 4096"),
    "camera.height": (lambda v: 16 <= v <= 4096, "an integer from 16 to 4096"),
    "camera.fps": (lambda v: 1 <= v <= 120, "an integer from 1 to 120"),
    "camera.read_timeout_s": (lambda v: 0.1 <= v <= 120, "seconds from 0.1 to 120"),
    "camera.retry_initial_s": (lambda v: 0.01 <= v <= 60, "seconds from 0.01 to 60"),
    "camera.retry_max_s": (lambda v: 0.01 <= v <= 3600, "seconds from 0.01 to 3600"),
    "detector.backend": (lambda v: v in ("blazeface", "haar"), '"blazeface" (learned, default) or "haar" (the seed paper\'s)'),
    "detector.min_score": (lambda v: 0.05 <= v <= 0.99, "a score from 0.05 to 0.99"),
    "detector.detect_width": (lambda v: 80 <= v <= 1920, "an integer from 80 to 1920"),
    "detector.scale_factor": (lambda v: 1.01 <= v <= 2.0, "a number from 1.01 to 2.0"),
    "detector.min_neighbors": (lambda v: 1 <= v <= 20, "an integer from 1 to 20"),
    "detector.min_face_px": (lambda v: 12 <= v <= 1000, "an integer from 12 to 1000"),
    "detector.detect_every": (lambda v: 1 <= v <= 30, "an integer from 1 to 30"),
    "detector.full_detect_every": (lambda v: 1 <= v <= 600, "an integer from 1 to 600"),
    "model.threads": (lambda v: 1 <= v <= 8, "an integer from 1 to 8"),
    "engagement.absent_after_s": (lambda v: 0 < v <= 3600, "seconds above 0, at most 3600"),
    "engagement.distracted_after_s": (lambda v: 0 < v <= 3600, "seconds above 0, at most 3600"),
    "engagement.ema_half_life_s": (lambda v: 0 <= v <= 60, "seconds from 0 to 60"),
    "engagement.min_hold_s": (lambda v: 0 <= v <= 60, "seconds from 0 to 60"),
    "engagement.min_confidence": (lambda v: 0 <= v < 1, "a probability from 0.0 to below 1.0"),
    "indicators.backend": (lambda v: v in ("console", "gpio", "jetson", "none"), '"console", "gpio", "jetson" or "none"'),
    "indicators.led_red_pin": (lambda v: 0 <= v <= 27, "a BCM GPIO number from 0 to 27"),
    "indicators.led_green_pin": (lambda v: 0 <= v <= 27, "a BCM GPIO number from 0 to 27"),
    "indicators.led_blue_pin": (lambda v: 0 <= v <= 27, "a BCM GPIO number from 0 to 27"),
    "indicators.buzzer_pin": (lambda v: 0 <= v <= 27, "a BCM GPIO number from 0 to 27"),
    "indicators.amber_green": (lambda v: 0 <= v <= 1, "a level from 0.0 to 1.0"),
    "indicators.brightness": (lambda v: 0 < v <= 1, "a level above 0.0, at most 1.0"),
    "indicators.absent_blink_on_s": (lambda v: 0.02 <= v <= 10, "seconds from 0.02 to 10"),
    "indicators.absent_blink_off_s": (lambda v: 0.02 <= v <= 10, "seconds from 0.02 to 10"),
    "indicators.fault_blink_on_s": (lambda v: 0.02 <= v <= 10, "seconds from 0.02 to 10"),
    "indicators.fault_blink_off_s": (lambda v: 0.02 <= v <= 10, "seconds from 0.02 to 10"),
    "indicators.buzzer_after_s": (lambda v: 0 <= v <= 3600, "seconds from 0 to 3600"),
    "indicators.buzzer_cooldown_s": (lambda v: 0 <= v <= 86400, "seconds from 0 to 86400"),
    "indicators.buzzer_beep_s": (lambda v: 0.01 <= v <= 10, "seconds from 0.01 to 10"),
    "indicators.quiet_hours": (lambda v: bool(QUIET_HOURS.match(v)), 'empty or "HH:MM-HH:MM", e.g. "22:00-07:00"'),
    "store.retention_days": (lambda v: 1 <= v <= 3650, "days from 1 to 3650"),
    "store.min_free_mb": (lambda v: 0 <= v <= 100000, "megabytes from 0 to 100000"),
    "web.port": (lambda v: 0 <= v <= 65535, "a port from 1 to 65535 (0: any free port)"),
    "web.threads": (lambda v: 4 <= v <= 256, "an integer from 4 to 256"),
    "web.max_viewers": (lambda v: 0 <= v <= 64, "an integer from 0 to 64"),
    "web.analysis_workers": (lambda v: 1 <= v <= 16, "an integer from 1 to 16"),
    "web.stream_fps": (lambda v: 1 <= v <= 60, "an integer from 1 to 60"),
    "web.max_upload_mb": (lambda v: 0 < v <= 200, "megabytes above 0, at most 200"),
    "web.max_upload_megapixels": (lambda v: 0 < v <= 200, "megapixels above 0, at most 200"),
    "web.session_idle_minutes": (lambda v: 1 <= v <= 1440, "minutes from 1 to 1440"),
    "web.session_max_hours": (lambda v: 1 <= v <= 720, "hours from 1 to 720"),
    "login.window_minutes": (lambda v: 1 <= v <= 1440, "minutes from 1 to 1440"),
    "login.slow_after_user": (lambda v: 1 <= v <= 1000, "an integer from 1 to 1000"),
    "login.slow_after_address": (lambda v: 1 <= v <= 1000, "an integer from 1 to 1000"),
    "login.first_delay_s": (lambda v: 0.1 <= v <= 60, "seconds from 0.1 to 60"),
    "login.max_delay_s": (lambda v: 0.1 <= v <= 3600, "seconds from 0.1 to 3600"),
    "login.lock_after_user": (lambda v: 1 <= v <= 1000, "an integer from 1 to 1000"),
    "login.lock_after_address": (lambda v: 1 <= v <= 10000, "an integer from 1 to 10000"),
    "login.lock_minutes": (lambda v: 1 <= v <= 1440, "minutes from 1 to 1440"),
    "privacy.keep_uploads": (lambda v: v in ("thumbnail", "none", "full"), '"thumbnail", "none" or "full"'),
}


class ConfigError(ValueError):
    """A configuration problem a person can fix; the message says how."""


def defaults() -> dict:
    text = resources.files("edge_app").joinpath("default_config.toml").read_text()
    return tomllib.loads(text)


def _type_name(value: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(type(value), type(value).__name__)


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key} = {value!r} is not allowed: expected {_type_name(default)}")


def _merge(base: dict, override: dict, prefix: str = "") -> None:
    for key, value in override.items():
        full = f"{prefix}{key}"
        if full == "engagement.mapping":
            if not isinstance(value, dict):
                raise ConfigError(f"{full} must be a table of emotion = \"level\"")
            base[key].update(value)
            continue
        if key not in base:
            allowed = ", ".join(sorted(base))
            raise ConfigError(f"{full} = {value!r} is not a known setting; allowed here: {allowed}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{full} must be a [{full}] table, not {value!r}")
            _merge(base[key], value, f"{full}.")
        else:
            base[key] = _coerce(full, value, base[key])


def _nested(dotted: str, value: Any) -> dict:
    """``"engagement.mapping.fear", v`` -> ``{"engagement": {"mapping": {"fear": v}}}``."""
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


def validate(cfg: dict) -> dict:
    for dotted, (check, allowed) in _RULES.items():
        section, key = dotted.split(".")
        value = cfg[section][key]
        if not check(value):
            raise ConfigError(f"{dotted} = {value!r} is not allowed: use {allowed}")
    known = set(defaults()["engagement"]["mapping"])
    for emotion, level in cfg["engagement"]["mapping"].items():
        if emotion not in known:
            raise ConfigError(f"engagement.mapping.{emotion} is not an emotion the model knows; use one of {sorted(known)}")
        if not isinstance(level, str) or not level.startswith(LEVEL_GROUPS):
            raise ConfigError(
                f"engagement.mapping.{emotion} = {level!r} is not allowed: a level must start with "
                + ", ".join(f'"{g}"' for g in LEVEL_GROUPS)
            )
    if cfg["camera"]["retry_max_s"] < cfg["camera"]["retry_initial_s"]:
        raise ConfigError("camera.retry_max_s must be at least camera.retry_initial_s")
    if cfg["login"]["max_delay_s"] < cfg["login"]["first_delay_s"]:
        raise ConfigError("login.max_delay_s must be at least login.first_delay_s")
    if bool(cfg["web"]["tls_cert"]) != bool(cfg["web"]["tls_key"]):
        raise ConfigError("web.tls_cert and web.tls_key go together: set both PEM paths or neither")
    return cfg


def load(path: Path | None = None, overrides: dict | None = None) -> dict:
    """Defaults, then ``path`` (or the device file when it exists), then ``overrides``.

    ``overrides`` maps dotted keys (``"web.port"``) to values, as from CLI flags.
    """
    cfg = defaults()
    if path is None and DEVICE_CONFIG.is_file():
        path = DEVICE_CONFIG
    if path is not None:
        path = Path(path)
        try:
            user = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        _merge(cfg, user)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        _merge(cfg, _nested(dotted, value))
    cfg = validate(cfg)
    cfg["_source"] = str(path) if path else "defaults"
    return cfg


def with_changes(cfg: dict, changes: dict) -> dict:
    """A validated copy of ``cfg`` with ``changes`` (dotted keys) applied."""
    new = copy.deepcopy({k: v for k, v in cfg.items() if not k.startswith("_")})
    for dotted, value in changes.items():
        _merge(new, _nested(dotted, value))
    validate(new)
    new["_source"] = cfg.get("_source", "defaults")
    return new


def data_dir(cfg: dict) -> Path:
    return Path(cfg["store"]["data_dir"]).expanduser()
