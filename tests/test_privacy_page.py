"""GET /privacy: the page a student reads about what this device keeps and who sees it,
written from the device's settings (a page true for the defaults only would mislead on a
device whose admin turned pictures with alerts on). Plain HTTP against the appliance."""
from __future__ import annotations

import html
import re

import requests

from edge_app import config as config_mod
from tests.conftest import login

PW = "student-pw-123"
JARGON = ("retention", "MJPEG", "MQTT", "UTC", "time server", "megapixel")


def page_text(session: requests.Session, url: str) -> str:
    """The privacy page's own section, as words (tags dropped, spaces joined)."""
    r = session.get(f"{url}/privacy", timeout=10)
    assert r.status_code == 200, r.text[:300]
    section = r.text.split('id="privacy-page">', 1)[1].split("</section>", 1)[0]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", section)).split())


def test_the_privacy_page_is_for_any_logged_in_user_linked_from_every_page_and_the_pause_form_stays(make_appliance,
                                                                                                    cfg):
    """/privacy was only the header button's form target: a GET said "Not a page to open"."""
    app = make_appliance(config_mod.with_changes(cfg, {"privacy.max_pause_minutes": 20}))
    app.accounts.create_user("ann", PW, "student")
    ann = login(app.url, "ann", PW)
    r = requests.get(f"{app.url}/privacy", allow_redirects=False, timeout=10)
    assert r.status_code in (302, 303) and r.headers["Location"].endswith("/login?next=/privacy")
    assert 'href="/privacy"' not in requests.get(f"{app.url}/login", timeout=10).text  # it would only come back here
    assert 'id="privacy-link"' in ann.get(f"{app.url}/upload", timeout=10).text  # the footer of every page
    text = page_text(ann, app.url)
    for said in ("a small copy of each photo is kept", "They are kept for 30 days, then deleted automatically",
                 "No picture from the camera is kept with it", "for 30 seconds, an alert is kept",
                 "can be watched by admins only", "not connected to the school's classroom server",
                 "This list is kept for a year", "nothing about you as a person",
                 "for 20 minutes at most: then it comes back on by itself", "not who pressed it",
                 "Only you, a teacher or an admin can switch it back on", "ask your teacher or the admin",
                 # the log's download and a backup are files off the device: said, each without a picture
                 "an admin can save the log as a file", "never a picture", "a backup, with no picture in it"):
        assert said in text, said
    assert "results are only shown on this device's own pages" not in text
    assert "anyone" not in text  # no button on the desk (indicators.backend "none")
    assert "it counts only the days it is switched on" not in text  # this device's clock is set
    assert not [word for word in JARGON if word.lower() in text.lower()], text
    # the POST is the header's pause button as before: pressed here, it comes back here
    r = ann.post(f"{app.url}/privacy", data={"csrf": ann.csrf, "do": "pause", "back": "/privacy"},
                 allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"].endswith("/privacy")
    assert app.loop.privacy.active is not None
    assert 'value="resume"' in ann.get(f"{app.url}/privacy", timeout=10).text
    r = ann.post(f"{app.url}/privacy", data={"csrf": ann.csrf, "do": "resume", "back": "/privacy"},
                 allow_redirects=False, timeout=10)
    assert r.status_code == 303 and app.loop.privacy.active is None


def test_the_privacy_page_says_what_this_device_is_set_to(make_appliance, cfg):
    changes = {"privacy.keep_uploads": "none", "privacy.snapshot_on_alert": True, "privacy.live_video": "everyone",
               "mqtt.host": "broker.school.lan", "mqtt.device_id": "desk-07", "mqtt.include_emotion": True,
               "store.retention_days": 400, "indicators.buzzer_after_s": 45}
    app = make_appliance(config_mod.with_changes(cfg, changes), with_loop=False)
    app.accounts.create_user("ann", PW, "student")
    text = page_text(login(app.url, "ann", PW), app.url)
    for said in ("the photo itself is not kept", "kept for 400 days, then deleted automatically",
                 "An admin has turned on pictures with alerts", "for 45 seconds, an alert is kept",
                 "can be watched by everyone who logs in here", "connected to the school's classroom server",
                 "with the feeling the program guessed: never a picture, never your name",
                 "on the classroom screen", "This list is kept for 400 days", "there is nothing to pause"):
        assert said in text, said
    assert "results with their pictures" not in text and "not connected" not in text
    assert not [word for word in JARGON if word.lower() in text.lower()], text


def test_pictures_kept_before_a_setting_was_turned_off_are_still_said(make_appliance, cfg, face_jpeg):
    """Turning pictures with alerts (or kept photos) off keeps the ones taken before until their
    retention or a delete; the page said "No picture from the camera is kept" over them."""
    from edge_app.web.admin_settings import apply_settings

    app = make_appliance(config_mod.with_changes(cfg, {"privacy.snapshot_on_alert": True}), with_loop=False)
    ann = app.accounts.create_user("ann", PW, "student")
    upload = app.store.add_upload(ann.id, "a.jpg", 10, 10, [])
    app.store.set_upload_image(upload, app.store.write_image(f"uploads/{upload}.jpg", face_jpeg))
    app.store.log_alert(1.0e9, "Distracted", "alerts/1.jpg", face_jpeg)
    apply_settings(app.ctx, {"privacy.snapshot_on_alert": False, "privacy.keep_uploads": "none"})
    session = login(app.url, "ann", PW)
    text = page_text(session, app.url)
    for said in ("No picture from the camera is kept with new alerts", "Pictures from before are still kept",
                 "1 picture from the camera, showing whoever sat at the desk then, is still kept",
                 "Your earlier photos are still kept", "results with their pictures", "the alerts and their pictures",
                 "an admin can delete their pictures sooner"):
        assert said in text, said
    assert "No picture from the camera is kept with it" not in text
    upload_page = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", session.get(f"{app.url}/upload", timeout=10).text)).split())
    assert "1 of your photos, sent while this device kept photos, still has its picture kept" in upload_page
    def live_note() -> str:
        return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", session.get(f"{app.url}/live", timeout=10).text)).split())
    assert "1 frame stored with alerts while an admin had that on stays on this device for" in live_note()
    app.store.delete_alert_snapshots()  # gone: the page says what is kept now
    assert "stored with alerts" not in live_note() and "The camera's frames are not stored." in live_note()
    app.store.delete_user_data(ann.id)
    text = page_text(session, app.url)
    assert "No picture from the camera is kept with it" in text and "still kept" not in text
    assert "with their pictures" not in text and "and their pictures" not in text
    assert "sent while this device kept photos" not in session.get(f"{app.url}/upload", timeout=10).text
