"""A technician's hand edits of /etc/engage-edge/config.toml, as they go wrong: each is
refused before the service starts (``--check``, which install.sh runs), with the key or
the line and what to write instead, and nothing the file meant is silently replaced."""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import subprocess

import pytest
from conftest import ENGAGE_EDGE

from edge_app import config as config_mod
from edge_app.cli import build_parser, cannot_serve
from edge_app.config import ConfigError


def check(tmp_path, capsys, data: bytes | str) -> tuple[int, str]:
    """``python -m edge_app.config --check`` on a file of ``data``: (exit status, its stderr)."""
    path = tmp_path / "config.toml"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    code = config_mod.main(["--check", str(path)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("host", ["", "0.0.0.0:8443", "http://desk-07.school.lan", "not an address"])
def test_a_web_host_nothing_can_listen_on_is_refused_by_the_check(tmp_path, capsys, host):
    """web.host took any text: an empty one ended the start in cheroot's ValueError traceback,
    and a URL or "0.0.0.0:8443" failed at the bind, after the database and the first admin
    were made, as "Choose another --port"; ``--check`` had said "accepted"."""
    code, err = check(tmp_path, capsys, f'[web]\nhost = "{host}"\n')
    assert code == 2, err
    assert f"web.host = {host!r} is not allowed" in err and 'without "http://" or a ":port"' in err, err


def test_every_usual_web_host_is_still_accepted(tmp_path):
    path = tmp_path / "config.toml"
    for host in ("0.0.0.0", "127.0.0.1", "::", "::1", "localhost", "desk-07", "desk-07.school.lan", "10.0.0.7"):
        path.write_text(f'[web]\nhost = "{host}"\n')
        assert config_mod.load(path).web.host == host


def test_an_address_this_machine_does_not_have_is_said_as_such_not_as_the_port(tmp_path):
    """The device's old address in web.host, after DHCP gave it another: "cannot serve on
    203.0.113.77:8443: No socket could be created ... Choose another --port" sent the
    technician to the port. It says the address is not this machine's, and what to set."""
    bind_error = OSError("No socket could be created -- (('203.0.113.77', 8080): [Errno 99] Cannot assign requested "
                         "address)")  # cheroot's, with no errno of its own
    said = cannot_serve("203.0.113.77", 8080, bind_error, "web.host in the config (or --host)")
    assert "203.0.113.77 is not an address of this machine" in said and "--port" not in said, said
    assert "set web.host in the config (or --host) to one of its addresses" in said and '"0.0.0.0"' in said, said
    taken = OSError(98, "Address already in use")  # on an address of its own, it is the port
    assert "Choose another --port" in cannot_serve("127.0.0.1", 8080, taken)
    conf = tmp_path / "config.toml"
    conf.write_text(f'[web]\nhost = "203.0.113.77"\nport = 0\n[store]\ndata_dir = "{tmp_path / "data"}"\n')
    r = subprocess.run([*ENGAGE_EDGE, "run", "--config", str(conf), "--source", "demo"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "ENGAGE_ADMIN_PASSWORD": "a-chosen-pw-77"})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "203.0.113.77 is not an address of this machine" in r.stderr and "--port" not in r.stderr, r.stderr


def test_the_run_flags_say_the_config_file_is_their_default():
    """``--port`` said "(default 8080)" on a device whose file serves on 8443."""
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    text = " ".join(run.format_help().split())
    assert "(default: web.port in the config, 8080 without one)" in text, text
    assert "(default: web.host in the config, 127.0.0.1 without one)" in text, text


@pytest.mark.parametrize("data, said", [
    # a level typed with an accent in an editor set to Latin-1
    ('[web]\nport = 8443\n[engagement.mapping]\nfear = "Not engag\u00e9 - \u00e9"\n'.encode("latin-1"),
     "is not UTF-8 at line 4, column 18 (byte 0xe9"),
    # Notepad's "Unicode"
    ("\ufeff[web]\nport = 8443\n".encode("utf-16-le"), 'is saved as UTF-16 (Notepad\'s "Unicode"): save it as UTF-8'),
])
def test_a_file_not_in_utf8_names_the_place_and_how_to_save_it(tmp_path, capsys, data, said):
    """Said as "cannot be read: 'utf-8' codec can't decode byte 0xe9 in position 43: invalid
    continuation byte": neither the line nor what to do."""
    code, err = check(tmp_path, capsys, data)
    assert code == 2 and said in err and "UTF-8" in err and "codec" not in err, err


def test_a_folder_given_as_the_config_says_to_name_the_file(tmp_path, capsys):
    assert config_mod.main(["--check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"config file {tmp_path} is a folder, not a file: name the file in it (--config {tmp_path / 'config.toml'})" \
        in err and "Errno" not in err, err


@pytest.mark.parametrize("text, said", [
    ("[camra]\nfps = 10\n", "camra = {'fps': 10} is not a known setting: did you mean [camera]?"),
    ("[web]\nfps = 10\n", "web.fps = 10 is not a known setting: it belongs under [camera], move it there"),
    ("[web]\nprot = 8443\n", "web.prot = 8443 is not a known setting: did you mean port?"),
    ("port = 8443\n[web]\nhost = \"0.0.0.0\"\n", "port = 8443 is not a known setting: it is a setting of [web] and "
                                                 "[mqtt]: move it under the one meant"),
    ("[store]\nminute_aggregates = true\n", "store.minute_aggregates = True is not a known setting: correct it, or "
                                            "delete it if it is a setting of an older release"),
])
def test_a_misspelt_or_misplaced_key_says_which_was_meant(tmp_path, capsys, text, said):
    """Only the list of what is allowed there was said: "fps" under [web] looked right to the
    technician who wrote it, since [web] has a stream_fps."""
    code, err = check(tmp_path, capsys, text)
    assert code == 2 and said in err and "(allowed here: " in err, err


@pytest.mark.parametrize("text, line", [
    ('[web]\nhost = 0.0.0.0\n', "line 2: host = 0.0.0.0"),
    ('[camera]\nsource = camera\n', "line 2: source = camera"),
    ('[camera]\nloop = True\n', "line 2: loop = True"),
    ('[mqtt]\npassword = "s3cret\n', "line 2: password = ..."),  # a password is never written to the journal
])
def test_a_toml_mistake_shows_its_line_and_how_to_write_it(tmp_path, capsys, text, line):
    """"Invalid value (at line 2, column 10)" did not say that a word needs quotes."""
    code, err = check(tmp_path, capsys, text)
    assert code == 2 and "is not valid TOML" in err and line in err, err
    assert 'Text goes in double quotes (source = "camera"' in err and "true and false in lower case" in err, err
    assert "s3cret" not in err


def test_a_saved_setting_this_release_refuses_says_what_runs_instead(tmp_path, caplog):
    """A retention of 5000 days saved on the settings page under an older release: the start
    warned "ignoring a saved setting: store.retention_days = 5000 is not allowed", and the
    device deleted after the file's 30 days with no word of the 30. A saved setting this
    release no longer has was told to be "corrected or deleted" in a file that never held it."""
    from edge_app.store.database import Store
    from edge_app.web.admin_settings import SETTINGS_KEY, with_saved_settings

    conf = tmp_path / "config.toml"
    conf.write_text("[store]\nretention_days = 30\n")
    store = Store(tmp_path / "data")
    try:
        store.set_setting(SETTINGS_KEY, {"store.retention_days": 5000, "engagement.minute_aggregates": True,
                                         "engagement.mapping": {"fear": "Scared"}})
        with caplog.at_level(logging.WARNING, logger="edge_app.web.admin_settings"):
            cfg = with_saved_settings(store, config_mod.load(conf))
    finally:
        store.close()
    assert cfg.store.retention_days == 30
    said = [r.getMessage() for r in caplog.records]
    assert any("store.retention_days = 5000 is not allowed" in m and f"store.retention_days is 30, from {conf}, until "
               "an admin saves another on Admin > Settings" in m for m in said), said
    assert any("engagement.mapping.fear is 'Partially engaged - confused', from" in m for m in said), said
    assert "ignoring a saved setting: engagement.minute_aggregates = True: this release has no such setting, so it " \
           "does nothing" in said, said


def test_the_numbers_the_descriptions_quote_are_the_real_defaults():
    """default_config.toml is generated from the schema, so its values cannot drift; the
    numbers its prose quotes can ("6.5 s by default", "2 minutes by default", "about 3 MP")."""
    from edge_app.fleet.classroom.model import SILENT_BEATS, SILENT_GRACE_S
    from edge_app.vision.stills import ANALYSIS_PIXELS, FULL_DECODE_PIXELS

    d = config_mod.defaults()

    def doc(dotted: str) -> str:
        section, key = dotted.split(".")
        return {f.name: f for f in dataclasses.fields(getattr(d, section))}[key].metadata["doc"]

    def number(pattern: str, text: str) -> float:
        found = re.search(pattern, text)
        assert found, (pattern, text)
        return float(found.group(1))

    absent = doc("engagement.absent_after_s")
    assert number(r"minimum hold: ([\d.]+) s by default", absent) == d.engagement.absent_after_s + d.engagement.min_hold_s
    assert number(r"\(([\d.]+) minutes by default\)", doc("indicators.buzzer_after_s")) * 60 == \
        d.indicators.buzzer_cooldown_s
    assert number(r"\((\d+) keep log-in quick", doc("web.threads")) == d.web.threads
    assert number(r"falls? below ([\d.]+)", doc("engagement.min_confidence")) == d.engagement.min_confidence
    assert number(r"about (\d+) MP", doc("web.max_upload_megapixels")) * 1e6 == ANALYSIS_PIXELS
    assert number(r"limited to (\d+) MP", doc("web.max_upload_megapixels")) * 1e6 == FULL_DECODE_PIXELS
    assert number(r"at most (\d+) megapixels", doc("privacy.keep_uploads")) * 1e6 == ANALYSIS_PIXELS
    heartbeat = doc("mqtt.heartbeat_s")
    assert number(r"silent for ([\d.]+)x this", heartbeat) == SILENT_BEATS
    assert number(r"\(\+([\d.]+) s\)", heartbeat) == SILENT_GRACE_S


def test_a_value_refused_by_with_changes_is_still_a_config_error():
    """The suggestions are part of the message, not a new kind of error the settings page
    would not catch."""
    with pytest.raises(ConfigError, match="did you mean stream_fps"):
        config_mod.with_changes(config_mod.defaults(), {"web.stream_fsp": 5})


def test_a_file_the_config_names_that_the_service_could_not_read_is_refused_by_the_check(tmp_path, capsys):
    """A certificate path mistyped, a folder, or a file under /home (hidden from the service by
    its unit) passed --check: install.sh restarted the upgraded service into a start that failed
    again and again. The check names each such file and what to do; files it does not use
    (the broker's while MQTT is off) are not judged."""
    cert, key = tmp_path / "desk.crt", tmp_path / "desk.key"
    cert.write_text("PEM"), key.write_text("PEM")
    code, err = check(tmp_path, capsys, f'[web]\ntls_cert = "{cert}"\ntls_key = "{tmp_path / "desk-key.pem"}"\n'
                                        f'[model]\nmanifest = "{tmp_path}"\n[detector]\nmanifest = "/home/tech/face.json"\n'
                                        f'[mqtt]\ntls_ca = "{tmp_path / "nowhere.pem"}"\n')
    assert code == 2, err
    assert f'web.tls_key = "{tmp_path / "desk-key.pem"}": there is no such file: correct the path' in err, err
    assert f'model.manifest = "{tmp_path}": it is a folder, not a file: name the file in it' in err, err
    assert 'detector.manifest = "/home/tech/face.json": the service cannot see files under /home' in err, err
    assert "web.tls_cert" not in err and "mqtt.tls_ca" not in err, err  # a file there; MQTT off: not judged
    assert check(tmp_path, capsys, f'[web]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')[0] == 0
    code, err = check(tmp_path, capsys, f'[mqtt]\nhost = "broker.school.lan"\ntls_ca = "{tmp_path / "nowhere.pem"}"\n')
    assert code == 2 and "mqtt.tls_ca" in err and "no such file" in err, err


def test_the_check_says_which_of_the_files_values_a_setting_saved_on_the_admin_page_replaces(tmp_path, capsys):
    """A technician set store.retention_days = 14 in the file, --check said "accepted", the
    restart changed nothing: the admin had saved 90 on Admin > Settings, which wins, and only the
    start's log said so. The check says it, reading the database without writing to it."""
    from edge_app.store.database import Store
    from edge_app.web.admin_settings import SETTINGS_KEY

    data = tmp_path / "data"
    store = Store(data)
    store.set_setting(SETTINGS_KEY, {"store.retention_days": 90, "engagement.mapping": {"fear": "Not engaged - bored"},
                                     "store.no_such_key": 1})
    store.close()
    files = {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()}
    conf = tmp_path / "config.toml"
    conf.write_text(f'[store]\ndata_dir = "{data}"\nretention_days = 14\n')
    assert config_mod.main(["--check", str(conf)]) == 0
    out = capsys.readouterr().out
    assert "note: setting store.retention_days = 90 was saved on an admin page and is used instead of 14" in out, out
    assert "note: setting engagement.mapping.fear = 'Not engaged - bored' was saved" in out, out
    assert "note: a saved setting is ignored: store.no_such_key = 1: this release has no such setting" in out, out
    # nothing written, no -wal or -shm made (made by root, the service could not open its database)
    assert {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()} == files
    running = Store(data)  # the service running: a save still in its -wal is read too
    try:
        running.set_setting(SETTINGS_KEY, {"store.retention_days": 120})
        assert config_mod.main(["--check", str(conf)]) == 0
        assert "store.retention_days = 120 was saved on an admin page" in capsys.readouterr().out
    finally:
        running.close()
    code, _ = check(tmp_path, capsys, f'[store]\ndata_dir = "{tmp_path / "none"}"\n')
    assert code == 0 and "note:" not in capsys.readouterr().out  # no database yet: nothing saved, nothing said


def test_a_refused_saved_password_is_never_quoted(tmp_path):
    """The warning for a saved value this release refuses quoted the value and the file's: a
    damaged saved broker password of the wrong type would have gone to the journal."""
    from edge_app.web.admin_settings import refused_saved

    secret = "s3cret-broker-pass"
    cfg = config_mod.load(None, {"mqtt.password": secret + "-file"})
    said = refused_saved(cfg, {"mqtt.password": [secret]}, ConfigError(f"mqtt.password = {[secret]!r} is not a string"))
    assert secret not in said and "mqtt.password: the saved value is not allowed" in said
