"""Configuration: documented defaults, a user TOML on top, CLI-style overrides on top of
that, and every bad value rejected with a message naming the key, the value and what is
allowed."""
from __future__ import annotations

import dataclasses
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from edge_app import config as config_mod
from edge_app.config import ConfigError


def write(tmp_path, text: str, name: str = "config.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def load_text(tmp_path, text: str, overrides=None) -> config_mod.Config:
    """``text`` "" is the defaults: a file of one comment (an empty file is an error)."""
    return config_mod.load(write(tmp_path, text or "# defaults\n"), overrides)


def test_defaults_are_the_shipped_file(tmp_path):
    shipped = tomllib.loads(resources.files("edge_app").joinpath("default_config.toml").read_text())
    cfg = load_text(tmp_path, "")
    assert cfg.to_dict() == shipped
    assert cfg == config_mod.defaults()
    assert cfg.camera.source == "demo"
    assert cfg.web.host == "127.0.0.1" and cfg.web.port == 8080
    assert cfg.engagement.mapping["happiness"] == "Engaged - likes the topic"
    assert cfg.engagement.mapping["fear"] == "Partially engaged - confused"
    assert cfg.source.endswith("config.toml")


def test_the_shipped_file_is_generated_from_the_schema():
    """default_config.toml can never drift from the schema: regenerate it with
    ``python -m edge_app.config --write-defaults``."""
    shipped = resources.files("edge_app").joinpath("default_config.toml").read_text()
    assert shipped == config_mod.render_default_toml(), "run: python -m edge_app.config --write-defaults"


def test_every_setting_is_documented_in_the_schema_and_the_file():
    text = config_mod.render_default_toml()
    cfg = config_mod.defaults()
    for name in (f.name for f in dataclasses.fields(cfg) if not f.metadata.get("internal")):
        section = getattr(cfg, name)
        assert f"[{name}]" in text
        assert (type(section).__doc__ or "").strip(), name
        for f in dataclasses.fields(section):
            doc = f.metadata["doc"]
            assert len(doc) > 10, f"{name}.{f.name} has no description"
            assert " ".join(doc.split()[:4]) in " ".join(line.lstrip("# ") for line in text.splitlines()), f.name
    assert "minute_aggregates" not in text  # read by nothing, so gone


def test_a_section_built_by_hand_is_validated_too():
    with pytest.raises(ConfigError, match="camera.fps = 500 is not allowed: use an integer from 1 to 120"):
        config_mod.Config(camera=config_mod.CameraSettings(fps=500))
    with pytest.raises(ConfigError, match="camera.width = '640' is not allowed: expected an integer"):
        config_mod.Config(camera=config_mod.CameraSettings(width="640"))


def test_a_config_is_immutable_and_read_as_attributes(tmp_path):
    cfg = load_text(tmp_path, "[web]\nport = 9090\n")
    assert cfg.web.port == 9090
    with pytest.raises(TypeError):
        cfg["web"]  # type: ignore[index]  # no mapping reads: one way to read a setting
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.web.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.engagement.mapping["fear"] = "Not engaged"  # type: ignore[index]


def test_the_settings_page_fields_come_from_the_schema():
    settings = {s.key: s for s in config_mod.admin_settings()}
    assert {"engagement.min_hold_s", "indicators.buzzer", "indicators.quiet_hours", "privacy.keep_uploads",
            "store.retention_days"} <= set(settings)
    assert "web.port" not in settings  # only what is safe to change while running
    assert settings["privacy.keep_uploads"].kind == ("thumbnail", "none", "full")
    assert settings["engagement.min_hold_s"].kind is float and settings["indicators.buzzer"].kind is bool
    for s in settings.values():
        section, key = s.key.split(".")
        field = {f.name: f for f in dataclasses.fields(getattr(config_mod.defaults(), section))}[key]
        assert s.help == field.metadata["doc"] and s.label


def test_check_says_whether_this_release_takes_a_kept_config(tmp_path, capsys):
    """An upgrade keeps /etc/engage-edge/config.toml, and a value an older release took
    ("12:00-12:00" quiet hours) is refused now: install.sh restarted into a service that
    exited 2, five times. It asks ``--check`` first, which names what to change."""
    kept = tmp_path / "config.toml"
    kept.write_text('[indicators]\nquiet_hours = "12:00-12:00"\n')
    assert config_mod.main(["--check", str(kept)]) == 2
    err = capsys.readouterr().err
    assert "indicators.quiet_hours = '12:00-12:00' is not allowed" in err and str(kept) in err
    kept.write_text('[indicators]\nquiet_hours = "22:00-07:00"\n')
    assert config_mod.main(["--check", str(kept)]) == 0
    assert capsys.readouterr().out == f"{kept}: accepted\n"
    install = (Path(__file__).resolve().parents[1] / "firmware" / "install.sh").read_text()
    step9 = install.split("9. enable and start", 1)[1]
    assert step9.index("edge_app.config --check") < step9.index("systemctl restart"), "checked before the restart"


def test_write_defaults_regenerates_the_file(tmp_path, monkeypatch):
    target = tmp_path / "default_config.toml"
    monkeypatch.setattr(config_mod, "default_toml_path", lambda: target)
    assert config_mod.main(["--write-defaults"]) == 0
    assert target.read_text() == config_mod.render_default_toml()
    assert tomllib.loads(target.read_text()) == config_mod.defaults().to_dict()


def test_user_file_overrides_only_its_keys(tmp_path):
    cfg = load_text(tmp_path, """
[web]
port = 9090
[engagement]
min_hold_s = 3          # an int where the default is a float is fine
[engagement.mapping]
fear = "Not engaged - scared"
""")
    assert cfg.web.port == 9090
    assert cfg.web.host == "127.0.0.1"  # untouched default
    assert cfg.engagement.min_hold_s == 3.0 and isinstance(cfg.engagement.min_hold_s, float)
    assert cfg.engagement.mapping["fear"] == "Not engaged - scared"
    assert cfg.engagement.mapping["happiness"] == "Engaged - likes the topic"


def test_dotted_overrides_win_over_the_file(tmp_path):
    cfg = load_text(tmp_path, '[web]\nport = 9090\nhost = "0.0.0.0"\n',
                    {"web.port": 7070, "web.host": None, "camera.source": "clip.mp4",
                     "engagement.mapping.neutral": "Partially engaged - blank"})
    assert cfg.web.port == 7070
    assert cfg.web.host == "0.0.0.0"  # None means "flag not given"
    assert cfg.camera.source == "clip.mp4"
    assert cfg.engagement.mapping["neutral"] == "Partially engaged - blank"


def test_with_changes_returns_a_validated_copy(tmp_path):
    cfg = load_text(tmp_path, "")
    new = config_mod.with_changes(cfg, {"web.stream_fps": 5})
    assert new.web.stream_fps == 5 and cfg.web.stream_fps == 10
    assert new is not cfg and new.source == cfg.source
    assert new.camera is not None and new.camera == cfg.camera
    with pytest.raises(ConfigError, match="web.stream_fps"):
        config_mod.with_changes(cfg, {"web.stream_fps": 0})


def test_every_mistake_in_a_file_is_named_at_once_with_the_file(tmp_path):
    """A technician mending a device's file saw one mistake per start (a restart each, the
    service giving up after five), and not which file was read."""
    path = tmp_path / "config.toml"
    path.write_text('[camera]\nsorce = "demo"\nfps = 500\n[web]\nport = "x"\n[wbe]\nport = 1\n')
    with pytest.raises(ConfigError) as err:
        config_mod.load(path)
    lines = str(err.value).split("\n")
    assert lines[0] == f"4 settings in {path} are not allowed:"
    assert [line.split(" ", 4)[3] for line in lines[1:]] == ["camera.sorce", "camera.fps", "web.port", "wbe"]
    path.write_text("[camera]\nfps = 500\n")
    with pytest.raises(ConfigError, match=f"use an integer from 1 to 120 \\(in {path}\\)$"):
        config_mod.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as err:
        config_mod.load(tmp_path / "nope.toml")
    assert "nope.toml" in str(err.value)


def test_invalid_toml_names_the_file_and_line(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        load_text(tmp_path, "[web]\nport = = 3\n")
    assert "config.toml" in str(err.value) and "line 2" in str(err.value)


def test_a_file_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    """Notepad saves UTF-8 with a BOM: the start stopped at "Invalid statement (at line 1,
    column 1)", and nothing on line 1 looked wrong."""
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf" + '[web]\nport = 9090\n[engagement.mapping]\nfear = "Partially engaged - é"\n'.encode())
    cfg = config_mod.load(path)
    assert cfg.web.port == 9090 and cfg.engagement.mapping["fear"] == "Partially engaged - é"


def test_binary_file_is_a_config_error(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="config.toml"):
        config_mod.load(path)


@pytest.mark.parametrize("text, overrides, key, value, allowed", [
    ("[web]\nprot = 80\n", None, "web.prot", "80", "port"),
    ("[webb]\nport = 80\n", None, "webb", "", "web"),
    ("", {"web.bogus": 1}, "web.bogus", "1", "max_viewers"),
    ('[web]\nport = "eighty"\n', None, "web.port", "'eighty'", "an integer"),
    ("[web]\nport = 80.5\n", None, "web.port", "80.5", "an integer"),
    ("[detector]\nprofile = 1\n", None, "detector.profile", "1", "true or false"),
    ("[engagement]\nmin_hold_s = true\n", None, "engagement.min_hold_s", "True", "a number"),
    ("[camera]\nsource = 0\n", None, "camera.source", "0", "a string"),
    ("[web]\nport = 70000\n", None, "web.port", "70000", "1 to 65535"),
    ("", {"web.port": -1}, "web.port", "-1", "1 to 65535"),
    ("[camera]\nfps = 0\n", None, "camera.fps", "0", "1 to 120"),
    ("[engagement]\nabsent_after_s = 0\n", None, "engagement.absent_after_s", "0.0", "above 0"),
    ("[store]\nretention_days = 0\n", None, "store.retention_days", "0", "1 to 3650"),
    ('[indicators]\nbackend = "led"\n', None, "indicators.backend", "'led'", '"gpio"'),
    ('[privacy]\nkeep_uploads = "all"\n', None, "privacy.keep_uploads", "'all'", '"thumbnail"'),
    ("[login]\nlock_after_user = 0\n", None, "login.lock_after_user", "0", "1 to 1000"),
    ("[login]\nwindow_minutes = 1.5\n", None, "login.window_minutes", "1.5", "an integer"),
    ('[indicators]\nquiet_hours = "22-07"\n', None, "indicators.quiet_hours", "'22-07'", "HH:MM-HH:MM"),
    ('[indicators]\nquiet_hours = "25:00-07:00"\n', None, "indicators.quiet_hours", "'25:00-07:00'", "HH:MM-HH:MM"),
    ('[indicators]\nquiet_hours = "22:00-07:60"\n', None, "indicators.quiet_hours", "'22:00-07:60'", "HH:MM-HH:MM"),
    # the same time twice read as an empty span: never quiet, and nothing said so
    ('[indicators]\nquiet_hours = "22:00-22:00"\n', None, "indicators.quiet_hours", "'22:00-22:00'",
     "from one time to another"),
    ('[indicators]\nquiet_hours = "00:00-00:00"\n', None, "indicators.quiet_hours", "'00:00-00:00'",
     "(all day: turn the buzzer off)"),
    # a level begins with its group as a word, and is short enough to show and send
    ('[engagement.mapping]\nfear = "Engagedly bored"\n', None, "engagement.mapping.fear", "'Engagedly bored'",
     'as a word ("Engaged - curious")'),
    (f'[engagement.mapping]\nfear = "Not engaged - {"x" * 47}"\n', None, "engagement.mapping.fear",
     "'Not engaged - xxxxxx'...", "at most 60 characters"),
    ('[engagement.mapping]\nhappiness = "Bored"\n', None, "engagement.mapping.happiness", "'Bored'", '"Partially engaged"'),
    ('[engagement.mapping]\nsadness = "engaged"\n', None, "engagement.mapping.sadness", "'engaged'", '"Not engaged"'),
    ('[engagement.mapping]\nboredom = "Not engaged"\n', None, "engagement.mapping.boredom", "", "happiness"),
    # a URL or a name with its port could never match a Host header: every request was refused
    ('[web]\nallowed_hosts = "https://desk-07.school.lan/"\n', None, "web.allowed_hosts", "https://desk-07",
     'e.g. "desk-07.school.lan, desk-07"'),
    ('[web]\nallowed_hosts = "desk-07, desk-08.school.lan:8443"\n', None, "web.allowed_hosts", ":8443", '":port"'),
])
def test_bad_values_name_key_value_and_what_is_allowed(tmp_path, text, overrides, key, value, allowed):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text, overrides)
    message = str(err.value)
    assert key in message
    assert value in message
    assert allowed in message


def test_good_allowed_hosts_are_accepted(tmp_path):
    for spec in ("", "desk-07.school.lan", " desk-07.school.lan, desk-07 ", "desk-07.school.lan.", "10.0.0.7"):
        assert load_text(tmp_path, f'[web]\nallowed_hosts = "{spec}"\n').web.allowed_hosts == spec


def test_good_levels_are_accepted(tmp_path):
    for level in ("Engaged", "Engaged - curious", "Engaged: curious", "Not engaged-bored", f"Partially engaged {'x' * 42}"):
        assert load_text(tmp_path, f'[engagement.mapping]\nfear = "{level}"\n').engagement.mapping["fear"] == level


def test_good_quiet_hours_are_accepted(tmp_path):
    for spec in ("", "22:00-07:00", "00:00-23:59", "12:30-13:15"):
        assert load_text(tmp_path, f'[indicators]\nquiet_hours = "{spec}"\n').indicators.quiet_hours == spec


def test_a_table_where_a_value_belongs_and_vice_versa(tmp_path):
    with pytest.raises(ConfigError, match=r"web must be a \[web\] table"):
        load_text(tmp_path, "web = 3\n")
    with pytest.raises(ConfigError, match="engagement.mapping"):
        load_text(tmp_path, '[engagement]\nmapping = "x"\n')
    with pytest.raises(ConfigError, match="web.port"):
        load_text(tmp_path, "[web.port]\nx = 1\n")


def test_cross_field_rules(tmp_path):
    with pytest.raises(ConfigError, match=r"camera.retry_max_s = 5.0 is not allowed: it must be at least "
                                          r"camera.retry_initial_s \(10.0\) \(in .*config.toml\)"):
        load_text(tmp_path, "[camera]\nretry_initial_s = 10.0\nretry_max_s = 5.0\n")
    with pytest.raises(ConfigError, match="login.max_delay_s = 5.0 is not allowed: it must be at least login.first_delay_s"):
        load_text(tmp_path, "[login]\nfirst_delay_s = 10.0\nmax_delay_s = 5.0\n")
    with pytest.raises(ConfigError, match="tls_cert and web.tls_key go together"):
        load_text(tmp_path, '[web]\ntls_cert = "/etc/cert.pem"\n')


def test_emotion_levels_and_contradicting_settings_are_named_with_the_rest(tmp_path):
    """The README promises every mistake in the file at once, naming it: an emotion's level and
    the rules between two settings were checked only after the rest, one per start and with no
    file named ("camera.retry_max_s must be at least camera.retry_initial_s": in which file?)."""
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, '[web]\nport = 99999\ntls_cert = "/etc/cert.pem"\n[engagement.mapping]\nfear = "Scared"\n'
                            'anger = "Bored"\n[camera]\nretry_initial_s = 10.0\nretry_max_s = 5.0\n')
    text = str(err.value)
    assert text.startswith("5 settings in ") and "config.toml are not allowed:" in text, text
    for said in ("web.port = 99999", "engagement.mapping.fear = 'Scared'", "engagement.mapping.anger = 'Bored'",
                 "camera.retry_max_s = 5.0", "web.tls_cert and web.tls_key go together"):
        assert text.count(said) == 1, (said, text)
    assert len(err.value.problems) == 5
    # a value refused is not judged again by its default against another setting ("retry_max_s = 30.0": not in the file)
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, '[camera]\nretry_initial_s = 60.0\nretry_max_s = "x"\n')
    assert err.value.problems == ["camera.retry_max_s = 'x' is not allowed: expected a number"], err.value.problems


def test_data_dir_expands_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_text(tmp_path, "")
    assert config_mod.data_dir(cfg) == tmp_path / ".local/share/engage-edge"


@pytest.mark.parametrize("text, key, other", [
    ('[indicators]\nbackend = "gpio"\npause_button_pin = 22\n', "indicators.pause_button_pin", "indicators.led_blue_pin"),
    ('[indicators]\nbackend = "gpio"\nbuzzer_pin = 17\n', "indicators.buzzer_pin", "indicators.led_red_pin"),
    ("[indicators]\nled_green_pin = 5\nled_blue_pin = 5\n", "indicators.led_blue_pin", "indicators.led_green_pin"),
])
def test_two_features_on_one_pin_are_refused_naming_both_keys(tmp_path, text, key, other):
    """The service crashed at start-up with gpiozero's GPIOPinInUse traceback (the button on
    the blue LED's pin): the file passed validation."""
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    assert key in str(err.value) and other in str(err.value) and "firmware/README.md" in str(err.value)
    assert load_text(tmp_path, '[indicators]\npause_button_pin = 24\n').indicators.pause_button_pin == 24


@pytest.mark.parametrize("text", ["", "\n  \n", "\ufeff"])
def test_an_empty_config_file_is_an_error_not_all_defaults(tmp_path, text):
    """A config file zeroed by a power cut while it was saved read as "all defaults": another
    data directory (an empty log, a new admin password), plain HTTP on 127.0.0.1, the wrong
    camera. A file of one comment is the way to ask for the defaults."""
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(config_mod.ConfigError, match="is empty .*# defaults"):
        config_mod.load(path)
    path.write_text("# defaults\n")
    assert config_mod.load(path).web.port == config_mod.defaults().web.port
