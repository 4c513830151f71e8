"""The README's examples are what the commands really print (issue 13, item 11)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ADMIN_PASSWORD, skip_unless_ci, wait_for

ROOT = Path(__file__).resolve().parent.parent


def console_example(command: str) -> tuple[list[str], list[str]]:
    """The README's ```console block whose ``$`` line runs ``engage-edge <command>``:
    (the arguments after the command, the lines printed)."""
    readme = (ROOT / "README.md").read_text()
    for block in re.findall(r"```console\n(.*?)```", readme, re.S):
        lines = block.rstrip("\n").split("\n")
        prompt = lines[0].removeprefix("$ ").split()
        if prompt[0].endswith("engage-edge") and prompt[1] == command:
            return prompt[2:], lines[1:]
    raise AssertionError(f"README has no console example of engage-edge {command}")


def test_the_analyze_example_is_what_analyze_prints(tmp_path):
    args, printed = console_example("analyze")
    empty = tmp_path / "config.toml"
    empty.write_text("# defaults\n")  # the defaults, as on a fresh checkout (never a device's /etc config)
    r = subprocess.run([sys.executable, "-m", "edge_app", "analyze", *args, "--config", str(empty)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip("\n").split("\n") == printed


def test_the_demo_claims_match_the_shipped_model(cfg):
    """The README says the demo shows "Partially engaged" with Duchenne's frightened face:
    the shipped model reads that face as fear (the default mapping's "Partially engaged")
    and no reference face of the golden set as fear. A model for which this stops being
    true makes this fail, and the README (and the demo's promise) must be updated;
    `tests/test_e2e.py` runs the whole demo minute."""
    from edge_app.runtime.appliance import classifier_from_config
    from edge_app.vision.faces import demo_cuts, demo_faces

    readme = " ".join((ROOT / "README.md").read_text().split())
    assert '"Partially engaged" (the frightened face: fear, in the default mapping)' in readme
    assert cfg.engagement.mapping["fear"].startswith("Partially engaged")
    classifier = classifier_from_config(cfg)
    tops = [classifier.classify(face)[0] for face in demo_faces()]
    fearful = {demo_cuts()[i].photo for i, top in enumerate(tops) if top == "fear"}
    assert fearful == {"duchenne_fright.jpg"}, [(c.photo, t) for c, t in zip(demo_cuts(), tops)]


def readme_block(after: str, language: str = "") -> str:
    """The first fenced block (of ``language``) that follows the sentence ``after``."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index(after)
    found = re.search(rf"```{language}\n(.*?)```", readme[start:], re.S)
    assert found, f"README has no ```{language} block after {after!r}"
    return found.group(1)


def test_the_configuration_examples_are_valid_configs(tmp_path):
    """Every ```toml block of the README (the config file, the [mqtt] section) loads: a
    renamed or removed key would stop the start-up of whoever copied it."""
    from edge_app import config as config_mod

    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    for block in blocks:
        path = tmp_path / "config.toml"
        path.write_text(block)
        config_mod.load(path)  # ConfigError names the key


def test_the_configuration_error_example_is_what_run_prints(tmp_path):
    readme = " ".join((ROOT / "README.md").read_text().split())
    found = re.search(r"`(error: configuration: (\w+)\.(\w+) = (\S+) is not allowed: [^`]*)`", readme)
    assert found, "README no longer quotes a configuration error"
    message, section, key, value = found.groups()
    bad = tmp_path / "config.toml"
    bad.write_text(f"[{section}]\n{key} = {value}\n")
    r = subprocess.run([sys.executable, "-m", "edge_app", "run", "--config", "config.toml", "--data-dir", str(tmp_path / "d")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert message in r.stderr.splitlines(), r.stderr


def test_the_first_start_lines_are_what_make_run_prints(tmp_path):
    """The three lines the Quick start shows, from a real ``engage-edge run --source demo``
    (the home folder, port and password are this run's)."""
    from edge_app import __version__

    shown = readme_block("On the first start it prints the admin login (and again at each start until that first log-in):").rstrip("\n").split("\n")
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "ENGAGE_ADMIN_PASSWORD"}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "edge_app", "run", "--config", str(ROOT / "edge_app/default_config.toml"),
                             "--source", "demo", "--port", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        printed = []
        for line in proc.stdout:  # blocks until each line is there
            if not line.startswith("[indicator]"):  # the console LED, between them
                printed.append(line.rstrip("\n"))
            if len(printed) == 3:
                break
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C, the README's way to stop it
        proc.wait(timeout=60)
    port = re.search(r":(\d+)$", printed[0])
    password = re.search(r"password: (\S+)$", printed[1])
    assert port and password, printed
    expected = [line.replace("0.1.0", __version__).replace(":8080", f":{port.group(1)}")
                .replace("3q0H...", password.group(1)).replace("/home/pi", str(home)) for line in shown]
    assert printed == expected
    assert (home / ".local/share/engage-edge/first-admin-password.txt").stat().st_mode & 0o777 == 0o600


def test_the_scripting_example_answers_as_shown(make_appliance, cfg):
    """The README's curl lines, sent by requests to a real appliance: the log-in answer,
    the analysis's fields and the deletion's answer are what the README shows."""
    import requests

    block = readme_block("Scripts use the same session login", "sh")
    answers = [line.split("# -> ", 1)[1] for line in block.split("\n") if "# -> " in line]
    assert len(answers) == 3, block
    shown_login = json.loads(answers[0].replace('"TOKEN"', '"x"'))
    app = make_appliance(with_loop=False)
    s = requests.Session()
    r = s.post(f"{app.url}/api/login", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=10)
    got = r.json()
    assert set(got) == set(shown_login) and {**got, "csrf": "x"} == shown_login
    analysis_lines = block[block.rindex("\n", 0, block.index("/api/analyze")) + 1:block.index("/api/uploads/")]
    sent = re.search(r"image=@(\S+)", analysis_lines).group(1)
    shown = json.loads(" ".join(line.split("#", 1)[1].replace("-> ", "", 1) for line in analysis_lines.split("\n")[1:4])
                       .replace("{...}", "null"))
    r = s.post(f"{app.url}/api/analyze", headers={"X-CSRF-Token": got["csrf"]},
               files={"image": ("photo.jpg", (ROOT / sent).read_bytes(), "image/jpeg")}, timeout=60)
    assert r.status_code == 200, r.text
    result = r.json()
    assert set(result) == set(shown) and set(result["faces"][0]) == set(shown["faces"][0])
    assert {**result, "upload_id": 12, "faces": None} == {**shown, "faces": None}
    assert {**result["faces"][0], "probabilities": None} == shown["faces"][0]
    r = s.delete(f"{app.url}/api/uploads/{result['upload_id']}", headers={"X-CSRF-Token": got["csrf"]}, timeout=10)
    shown_delete = json.loads(answers[2].split("   ")[0])
    assert set(r.json()) == set(shown_delete) and r.json()["deleted"] == result["upload_id"]


def test_the_broker_accounts_recipe_leaves_files_only_mosquitto_reads(tmp_path):
    """The README's accounts, listener and ACL lines, run as written less sudo (in a folder
    for /etc/mosquitto, on a loopback port without TLS): the password file and the ACL are
    mosquitto's own and closed to other users, as Mosquitto 2.0.16+ asks ("Future versions
    will refuse to load this file"), and a real Mosquitto started as root, which reads them
    after dropping to `mosquitto`, lets a desk in with its password and no one with another.
    mosquitto_passwd alone left the password hashes 0644 for every user (0600 root from 2.0.16,
    which the broker cannot open)."""
    import pwd
    import shutil
    import tempfile

    from mqtt_broker import MOSQUITTO, free_port

    if os.geteuid() != 0:
        skip_unless_ci("the recipe gives files to the user mosquitto: root only (CI runs as root)")
    owner = pwd.getpwnam("mosquitto")
    block = readme_block("Then the accounts, the listener and the ACL", "sh")
    port = free_port()
    listener = "listener 8883\ncertfile /etc/mosquitto/certs/server.pem\nkeyfile /etc/mosquitto/certs/server.key\n"
    assert listener in block and block.count("sudo mosquitto_passwd") == 2, block
    etc = Path(tempfile.mkdtemp(prefix="etc-mosquitto-", dir="/tmp"))  # /tmp/pytest-of-root is closed to mosquitto
    try:
        etc.chmod(0o755)
        (etc / "conf.d").mkdir(mode=0o755)
        script = (block.replace(listener, f"listener {port} 127.0.0.1\n")  # TLS: the certificate recipe's test
                  .replace("sudo mosquitto_passwd", "printf '%s\\n' desk-pass-1 desk-pass-1 | mosquitto_passwd")
                  .replace("sudo systemctl restart mosquitto", "").replace("sudo ", "")
                  .replace("/etc/mosquitto/", f"{etc}/"))
        made = subprocess.run(["bash", "-euc", script], capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        for name in ("passwd", "engage.acl"):
            st = (etc / name).stat()
            assert (st.st_uid, st.st_gid) == (owner.pw_uid, owner.pw_gid), name
            assert st.st_mode & 0o007 == 0, f"{name} is {oct(st.st_mode & 0o777)}: others may read it"
        broker = subprocess.Popen([MOSQUITTO, "-c", str(etc / "conf.d" / "engage.conf")], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            def publish(user: str, password: str) -> int:
                return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-u", user, "-P", password,
                                       "-t", f"engage/{user}/state", "-m", "{}"], capture_output=True,
                                      timeout=30).returncode

            wait_for(lambda: broker.poll() is not None or publish("desk-07", "desk-pass-1") == 0, timeout=15,
                     what="the desk let in")
            assert broker.poll() is None, broker.communicate()[0]
            assert publish("desk-07", "another-pass") != 0 and publish("classroom", "desk-pass-1") == 0
        finally:
            broker.terminate()
            log = broker.communicate(timeout=30)[0]
        assert "Unable to open" not in log and "Warning" not in log, log
    finally:
        shutil.rmtree(etc)


def test_the_broker_certificate_recipe_makes_files_mosquitto_serves_and_clients_accept(tmp_path):
    """The README's openssl lines (step 1 of Classroom), run as written less sudo: a real
    Mosquitto serves the certificate, a client holding ``school-ca.pem`` accepts it for
    broker.school.lan, strictly as Python 3.13's default context checks (a CA with no key
    usage is refused there), and for no other name; the key is readable by the group
    ``mosquitto``, as Mosquitto reads it after dropping root (0600 stopped it)."""
    import grp
    import socket
    import ssl

    from mqtt_broker import Broker

    block = readme_block("The broker's TLS certificate first", "sh").replace("\\\n", " ")
    lines = [line for line in block.splitlines() if line.startswith("sudo openssl") or line.startswith("sudo chgrp")]
    assert len(lines) == 4, block
    certs = tmp_path / "certs"
    certs.mkdir()
    as_root = os.geteuid() == 0  # chgrp to a group one is not in needs root (the README says sudo)
    for line in lines:
        if line.startswith("sudo chgrp") and not as_root:
            assert line.startswith("sudo chgrp mosquitto server.key"), line
            line = line.replace("chgrp mosquitto", f"chgrp {os.getegid()}")
        subprocess.run(line.replace("sudo ", ""), shell=True, cwd=certs, check=True, capture_output=True, timeout=60)
    key = (certs / "server.key").stat()
    assert key.st_mode & 0o777 == 0o640
    assert grp.getgrgid(key.st_gid).gr_name == "mosquitto" or not as_root
    b = Broker(tmp_path / "broker", tls=True)
    b._tls_files = {"ca": certs / "school-ca.pem", "cert": certs / "server.pem", "key": certs / "server.key"}
    b.start()
    try:
        context = ssl.create_default_context(cafile=str(certs / "school-ca.pem"))
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        with socket.create_connection(("127.0.0.1", b.tls_port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="broker.school.lan") as tls:
            assert tls.getpeercert()["subjectAltName"] == (("DNS", "broker.school.lan"),)
        with socket.create_connection(("127.0.0.1", b.tls_port), timeout=10) as raw, \
                pytest.raises(ssl.SSLCertVerificationError, match="broker.other.lan"):
            context.wrap_socket(raw, server_hostname="broker.other.lan")
    finally:
        b.stop()


def test_the_quick_start_quotes_the_retention_warning_a_start_logs(tmp_path, caplog):
    """The Quick start quotes the warning a start logs while no time server has set the
    clock; a newcomer searching their console for it must find those words (it quoted the
    warning of before 2026-11-29, when nothing past retention was deleted)."""
    import logging

    from edge_app.store.accounts import Accounts
    from edge_app.store.database import Store
    from edge_app.store.housekeeping import Housekeeping

    readme = " ".join((ROOT / "README.md").read_text().split())
    found = re.search(r"a `WARNING \.\.\. (retention: .*?)(?: \.\.\.)?` follows at each start", readme)
    assert found, "the Quick start no longer quotes the retention warning"
    store = Store(tmp_path / "data")
    try:
        with caplog.at_level(logging.WARNING, logger="edge_app.store.housekeeping"):
            Housekeeping(store, Accounts(store), lambda: 30, clock_set=lambda: False).run_once()
    finally:
        store.close()
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention:")]
    assert logged and found.group(1) in logged[0], (found.group(1), logged)


def test_the_repository_layout_names_every_module_and_unit():
    """The layout table is where a newcomer looks for the file that does X: every module of
    the device package and every systemd unit is named there (the running-time retention
    clock and the fault-light unit were not)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    row = next(line for line in lines if line.startswith("| `edge_app/` |"))
    named = set(re.findall(r"`([\w/.-]+)`", row))
    unnamed = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "edge_app").rglob("*.py"))
               if p.stem not in {"__init__", "__main__"} and p.stem not in named]
    assert unnamed == [], f"README's layout does not name {unnamed}"
    units = next(line for line in lines if line.startswith("| `systemd/` |"))
    missing = [p.name for p in sorted((ROOT / "systemd").glob("*.service")) if f"`{p.name}`" not in units]
    assert missing == [], f"README's layout does not name {missing}"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_contents_list_every_section_in_order_and_links_resolve():
    """A newcomer finds a section from the contents at the top: it lists every ``##``
    section in the order they come, and every ``(#anchor)`` link of the README lands on a
    heading (a renamed section left links to nowhere)."""
    readme = (ROOT / "README.md").read_text()
    prose = re.sub(r"```.*?```", "", readme, flags=re.S)
    sections = [github_anchor(h) for h in re.findall(r"^## (.*)$", prose, re.M) if h.strip() != "Contents"]
    contents = re.search(r"^## Contents\n(.*?)^## ", prose, re.S | re.M)
    assert contents, "README has no ## Contents"
    assert re.findall(r"\]\(#([\w-]+)\)", contents.group(1)) == sections
    headings = {github_anchor(h) for h in re.findall(r"^#+ (.*)$", prose, re.M)}
    assert {a for a in re.findall(r"\]\(#([\w-]+)\)", prose) if a not in headings} == set()


def test_on_a_device_says_what_install_sh_ends_with():
    """"On a device" tells the technician what install.sh's last lines say: the web UI's
    address, the journal line with the first admin password, and the reboot a Pi needs for
    its camera setting (the README ended at install.sh, the password and the reboot left to
    firmware/README.md)."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    section = readme[readme.index("## On a device"):readme.index("## Classroom")]
    script = (ROOT / "firmware/install.sh").read_text()
    journal = re.search(r'"(journalctl -u engage-edge \| grep \'first start\')"', script)
    assert journal and f"`{journal.group(1)}`" in section
    assert 'echo "done. Web UI: https://$HOST.local:8443/' in script and "`https://<hostname>.local:8443/`" in section
    assert "appended the camera setting to $BOOT_CONFIG: reboot once" in script
    assert "sudo reboot # once, on a Pi, when it says it appended the camera setting" in section
