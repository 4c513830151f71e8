"""A technician's hand edits of /etc/engage-edge/config.toml, as they go wrong: each is
refused before the service starts (``--check``, which install.sh runs), with the key or
the line and what to write instead, and nothing the file meant is silently replaced."""
from __future__ import annotations

import os
import subprocess

import pytest
from conftest import ENGAGE_EDGE

from edge_app import config as config_mod
from edge_app.cli import build_parser, cannot_serve


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
