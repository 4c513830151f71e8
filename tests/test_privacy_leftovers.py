"""A photo or live frame must not outlive its row: a process killed (power cut, OOM, the
watchdog) between writing a kept image and recording it, halfway through writing it, or
between deleting a row and its file leaves a file no retention purge or "Delete this
photo" ever finds. The next start removes it."""
from __future__ import annotations

import dataclasses
import os

import pytest
from conftest import damage_table

from edge_app import config as config_mod
from edge_app.store.database import Store, StoreError


def stored_files(images) -> list[str]:
    return sorted(p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file())


def test_images_a_killed_process_left_behind_are_gone_after_the_next_start(cfg, make_appliance):
    store = Store(config_mod.data_dir(cfg))
    images = store.data_dir / "images"
    kept = store.add_upload(None, "kept.jpg", 10, 10, [])
    store.set_upload_image(kept, store.write_image(f"uploads/{kept}.jpg", b"kept photo"))
    store.log_alert(1_700_000_000.0, "Not engaged", store.write_image("alerts/1700000000000.jpg", b"kept frame"))
    # killed after the image was written, before its row said so
    unrecorded = store.add_upload(None, "Anna_Schmidt.jpg", 10, 10, [])
    store.write_image(f"uploads/{unrecorded}.jpg", b"a student's face")
    # killed halfway through fsutil.atomic_write: its temp file beside the target
    (images / "uploads" / f".{unrecorded + 1}.jpg.k3x9q_tmp.tmp").write_bytes(b"half a face")
    # killed after "Delete this photo" committed, before the file went
    store.write_image("uploads/77.jpg", b"a deleted photo")
    # killed between the alert's snapshot and its row
    store.write_image("alerts/1700000060000.jpg", b"a live frame")
    store.close()

    make_appliance(with_loop=False)

    assert stored_files(images) == ["alerts/1700000000000.jpg", f"uploads/{kept}.jpg"]


def test_rows_naming_pictures_already_deleted_forget_them_at_the_next_start(cfg, make_appliance):
    """A deletion removes the pictures before their rows forget them: killed between the two
    (or the update refused by a full disk), the alerts page said "1 snapshot is stored" over a
    link that answered 404, and the privacy page counted a picture that was gone."""
    from edge_app.store import reports

    store = Store(config_mod.data_dir(cfg))
    store.log_alert(1_700_000_000.0, "Not engaged", store.write_image("alerts/1.jpg", b"kept frame"))
    store.log_alert(1_700_000_060.0, "Distracted", store.write_image("alerts/2.jpg", b"deleted frame"))
    upload = store.add_upload(None, "a.jpg", 10, 10, [])
    store.set_upload_image(upload, store.write_image(f"uploads/{upload}.jpg", b"deleted photo"))
    for name in ("alerts/2.jpg", f"uploads/{upload}.jpg"):  # the files went; the process was killed before the rows
        store.image_file(name).unlink()
    store.close()

    app = make_appliance(with_loop=False)

    assert [r[0] for r in app.store.query("SELECT snapshot_path FROM alerts ORDER BY t")] == ["alerts/1.jpg", None]
    assert app.store.query("SELECT image_path FROM uploads WHERE id = ?", (upload,))[0][0] is None
    assert reports.stored_snapshots(app.store) == 1


def test_the_audit_log_naming_students_is_kept_a_year_as_the_readme_says(tmp_path):
    """The one record the retention period does not bound: an admin's deletion must stay
    accountable after the photo is gone, for a year (README, Privacy), and no longer."""
    store = Store(tmp_path / "data")
    now = 1_800_000_000.0
    for days in (40, 364, 366):
        store.execute("INSERT INTO audit(t, actor, action, target, detail) VALUES (?, 'admin', 'deleted upload', "
                      "'anna.schmidt', ?)", (now - days * 86400, f"{days} days ago"))
    store.purge(30, now=now)
    assert [r[0] for r in store.query("SELECT detail FROM audit ORDER BY t")] == ["364 days ago", "40 days ago"]
    store.close()


def test_a_second_start_on_a_running_devices_data_is_refused_and_leaves_its_images_alone(cfg, make_appliance):
    """`engage-edge run` typed while the service runs must not remove the photo the running
    one has just written and is about to record; on another port it ran beside it, both
    logging into one log (with a made-up crash "Absent"). It is refused before it logs,
    opens the camera or drives a pin."""
    running = make_appliance(with_loop=False)
    upload = running.store.add_upload(None, "in_flight.jpg", 10, 10, [])
    running.store.write_image(f"uploads/{upload}.jpg", b"written, its row not yet told")
    other = dataclasses.replace(cfg, web=dataclasses.replace(cfg.web, port=0))

    with pytest.raises(StoreError, match="engage-edge is already running on .*: stop it first"):
        make_appliance(other)  # with its capture loop

    assert stored_files(running.store.data_dir / "images") == [f"uploads/{upload}.jpg"]
    assert running.store.query("SELECT COUNT(*) FROM state_changes")[0][0] == 0
    running.stop()
    make_appliance(other, with_loop=False)  # once it has stopped, a start goes ahead


@pytest.mark.parametrize("left", ["engage.db-wal", "engage.db.old", "images/uploads/12.jpg"])
def test_a_data_directory_whose_database_went_missing_is_not_started_afresh(tmp_path, left):
    """engage.db moved away (a restore stopped by a power cut between its two moves, fsck,
    a technician) with its -wal, the copy a restore moved aside, or kept photos still there:
    a new empty database took in the stale -wal (the newest rows it alone held were then
    checkpointed away for good) and the start deleted every kept photo."""
    data = tmp_path / "data"
    store = Store(data)
    store.log_state_change(1_800_000_000.0, "Engaged", "Engaged", "neutral", 0.9)
    store.write_image("uploads/12.jpg", b"a kept photo")
    store.close()
    (data / left).parent.mkdir(parents=True, exist_ok=True)
    (data / left).write_bytes(b"what is left")
    os.replace(data / "engage.db", tmp_path / "moved.db")
    before = {p.relative_to(data).as_posix(): p.read_bytes() for p in data.rglob("*") if p.is_file()}

    with pytest.raises(StoreError, match="engage.db is missing, but") as refused:
        Store(data)

    assert {p.relative_to(data).as_posix(): p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    assert not (data / "engage.db").exists()
    if left == "engage.db.old":  # a restore's copy: how to put it back
        assert 'for f in engage.db*.old; do mv -n "$f" "${f%.old}"; done' in str(refused.value)
    assert "engage-edge restore FILE" in str(refused.value)


def test_a_new_data_directory_and_one_with_only_empty_folders_start_afresh(tmp_path):
    data = tmp_path / "data"
    (data / "images" / "uploads").mkdir(parents=True)
    Store(data).close()
    assert (data / "engage.db").is_file()


def test_a_database_whose_uploads_cannot_be_read_keeps_every_image_and_still_starts(cfg, make_appliance, caplog):
    """Damage under the uploads table (a bad block) must not make the cleanup guess: it
    removes nothing, says so, and the appliance starts (the pages that read uploads say
    what is wrong, as before the cleanup existed)."""
    store = Store(config_mod.data_dir(cfg))
    for n in range(300):  # the table spans pages of its own, beyond the schema's first page
        store.add_upload(None, f"photo{n}.jpg", 10, 10, [])
    store.write_image("uploads/1.jpg", b"a kept photo")
    damage_table(store, "uploads")

    make_appliance(with_loop=False)

    assert stored_files(store.data_dir / "images") == ["uploads/1.jpg"]
    assert "removed nothing" in caplog.text


def test_a_photo_deleted_while_it_is_stored_leaves_no_image(make_appliance, face_jpeg):
    """An upload's row is stored first, its kept image after; "Delete all my photos" (or an
    admin's Delete data) landing between the two removed the row, and the image was then
    written for no row: beyond every later delete and the retention purge until a restart
    (a review found 40 of 40 left by deletes pressed during uploads). The delete here lands
    exactly there, from inside the image write."""
    from tests.conftest import login

    appliance = make_appliance(with_loop=False)
    appliance.accounts.create_user("sam", "student-pw-123", "student")
    sam = appliance.accounts.find("sam")
    real_write = appliance.store.write_image

    def write_after_a_delete(relative: str, data: bytes) -> str:
        appliance.store.delete_user_data(sam.id)  # the delete commits first
        return real_write(relative, data)

    appliance.store.write_image = write_after_a_delete
    s = login(appliance.url, "sam", "student-pw-123")
    r = s.post(f"{appliance.url}/api/analyze", data={"csrf": s.csrf},
               files={"image": ("student.jpg", face_jpeg, "image/jpeg")}, timeout=60)
    assert r.status_code == 200, r.text
    assert appliance.store.query("SELECT COUNT(*) FROM uploads")[0][0] == 0
    assert stored_files(appliance.store.data_dir / "images") == []  # its image did not outlive it


def test_a_killed_restores_copy_is_removed_at_the_next_start(cfg, make_appliance):
    """A restore killed outright leaves its whole database (students' records, password
    hashes) hidden beside engage.db; only another restore removed it, so it stayed for ever."""
    data = config_mod.data_dir(cfg)
    Store(data).close()
    left = data / ".engage.db.k3x9q2ab.restore"
    left.write_bytes(b"a whole database")
    (data / ".engage.db.k3x9q2ab.restore-journal").write_bytes(b"its journal")

    make_appliance(with_loop=False)

    assert sorted(p.name for p in data.iterdir() if ".restore" in p.name) == []


def test_a_frame_encoded_as_the_last_viewer_leaves_is_not_kept(monkeypatch):
    """The JPEG was cached after the encoding, outside the lock: a last viewer leaving during it
    cleared the frame, then the cache put its JPEG back, kept until a later viewer's frame."""
    import numpy as np

    from edge_app.runtime import live as live_mod

    live = live_mod.LiveFrame()
    live.viewers = 1
    live.publish(np.full((48, 64, 3), 90, np.uint8))
    encode = live_mod.cv2.imencode

    def left_meanwhile(*args):
        live.viewers = 0  # the viewer's stream closed while this frame was being encoded
        return encode(*args)

    monkeypatch.setattr(live_mod.cv2, "imencode", left_meanwhile)
    assert live.jpeg(0) is not None  # the stream that asked still gets it
    assert live._jpeg is None and live._frame is None  # nothing of it stays


def test_a_new_live_viewer_never_gets_a_frame_from_before_they_watched():
    """The loop publishes frames only while someone watches, and the last one stayed: the next
    viewer, hours later, was sent it at once (a student who has since left, or one filmed just
    before they pressed Pause). With no viewer no frame is kept, and a stream begins with a
    frame published after it opened."""
    import threading

    import cv2
    import numpy as np

    from edge_app.runtime.live import LiveFrame, mjpeg_stream

    def frame(value: int) -> np.ndarray:
        return np.full((48, 64, 3), value, np.uint8)

    def shade(part: bytes) -> int:
        jpeg = part[part.index(b"\r\n\r\n") + 4:-2]
        return int(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE).mean())

    live = LiveFrame(placeholder_every_s=30)
    live.viewers = 1
    live.publish(frame(30))  # the student watched before
    assert live.jpeg(0) is not None
    live.viewers = 0  # ... and left: nothing of that frame stays
    assert live.jpeg(0, timeout=0.1) is None
    live.viewers = 1  # a viewer, later
    parts = mjpeg_stream(live, lambda: "ok", fps=15)
    later = threading.Timer(0.3, live.publish, (frame(220),))
    later.start()
    try:
        assert shade(next(parts)) > 200  # the frame after they came, never the one from before
    finally:
        later.cancel()
        live.close()
    # another viewer joining one who watches waits for the next frame too
    live = LiveFrame(placeholder_every_s=30)
    live.viewers = 2
    live.publish(frame(30))
    parts = mjpeg_stream(live, lambda: "ok", fps=15)
    threading.Timer(0.3, live.publish, (frame(220),)).start()
    try:
        assert shade(next(parts)) > 200
    finally:
        live.close()
