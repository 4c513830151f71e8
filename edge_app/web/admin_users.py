"""Admin user management: the users page with per-user summaries, creating users, and
the per-user actions (change role, disable, enable, reset password, delete data, delete). The two
deletions cannot be undone, so they first show a page naming what will be lost and act
only on its confirmation; every action is written to the audit log (``/admin/audit``).
An admin's own row offers only what makes sense for the account they are using: their
own photos may go ("Delete my photos"), the account itself is not disabled or deleted
from under them, and their password changes on Your account (it asks for the old one)."""
from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlencode

import bottle
from bottle import HTTPResponse, request

from edge_app.engagement import LEVEL_GROUPS
from edge_app.store import reports
from edge_app.store.accounts import RIGHTS, ROLES, AuthError
from edge_app.web.expiring import ExpiringMap
from edge_app.web.guard import Guard
from edge_app.web.privacy import disown_pause, pauses_of
from edge_app.web.resubmit import Submissions, new_attempt

log = logging.getLogger(__name__)
IRREVERSIBLE = ("delete-data", "delete")  # asked first, on a page that says what is lost
MAX_CLASS = 100  # names in one list: each is one password hash (scrypt) while the admin waits
SHEET_KEEP_S = 60.0  # a class's passwords, for a second send of its form (a double click, a reload at once)
SHEETS_KEPT = 10  # classes made within that minute, at most: a script sending lists in a loop cannot grow memory


def temporary() -> bool:
    """The form's "they choose their own password at the first log-in" box (checked by
    default): a password an admin chose is known to the admin, and to whoever saw the note
    it was handed over on. A browser sends "on" or nothing; a script may say yes or no."""
    value = (request.forms.get("temporary") or "").strip().lower()
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("", "off", "0", "false", "no"):
        return False
    raise AuthError("temporary must be on or off", "temporary")


def page_query() -> str:
    """The users page's own query ("?level=Engaged", or ""), without a previous outcome's
    note (or the text an older version put there, from a bookmark). Its forms post to URLs
    that carry it, and each action leads back to the page with it: the filter the admin
    chose is kept after disabling, deleting, etc."""
    kept = [(k, v) for k, v in parse_qsl(request.query_string, keep_blank_values=True)
            if k not in ("note", "done", "error", "sig")]
    return "?" + urlencode(kept) if kept else ""


def uploads(n: int) -> str:
    """"1 upload", "3 uploads": the outcome of a deletion read "and 1 uploads"."""
    return f"{n} upload{'' if n == 1 else 's'}"


def created(user) -> str:
    """What the page says once ``user`` is created (to the form sent again too)."""
    return f"Created {user.role} {user.username}" + (
        "; they choose their own password at the first log-in." if user.must_change_password else ".")


class ClassSheets:
    """The passwords of a class just made, for its form sent again within ``SHEET_KEEP_S``
    (a second click while they hash, a reload at once), in memory only. Kept for 10 minutes
    and dropped only when the next class was made, Back and "Confirm form resubmission" in
    an admin's browser left open showed every new student's password again, and they stayed
    in the process until a restart: now each sheet leaves memory when its time is up. Keyed
    by (the admin's user id, the form's attempt token): only the admin who sent it sees it."""

    def __init__(self) -> None:
        self._sheets: ExpiringMap[tuple[int, str], list] = ExpiringMap(SHEET_KEEP_S, SHEETS_KEPT)

    def put(self, key: tuple[int, str], made: list) -> None:
        self._sheets.put(key, made, keep_s=SHEET_KEEP_S)  # read at each put: tests shorten it

    def get(self, key: tuple[int, str]) -> list | None:
        return self._sheets.get(key)

    def __len__(self) -> int:
        return len(self._sheets)


def login_address() -> str:
    """Where the students log in, as the admin's browser reached the device (behind a trusted
    proxy, its scheme and host): a printed password sheet said no address, and a class could
    not find the device."""
    return f"{request.urlparts.scheme}://{request.get_header('Host', '')}/login"


def install(app: bottle.Bottle, ctx, guard: Guard) -> None:
    # "Add user" clicked twice (or its answer reloaded) sends the form twice: the second is
    # answered with the first's outcome, not "already exists" under an account just made
    submissions = Submissions()
    class_submissions = Submissions()  # the same for Add a class, whose answer is the only copy of the passwords
    class_sheets = app.config["admin_users.class_sheets"] = ClassSheets()  # (there for tests to look in)

    @app.get("/admin/users")
    def users_page():
        me = guard.require_user(admin=True)
        outcome = guard.flash()
        kept = guard.kept_form()  # a class list sent while the password was stale, back after /confirm
        if kept.get("names"):
            return render(me, {"names": kept["names"]}, done="Password confirmed. Your class list is back under "
                          "Add a class: check it and press Add students.")
        return render(me, done=outcome["done"], error=outcome["error"])

    def render(me, typed: dict | None = None, done: str = "", error: str = "") -> str:
        """The users page; ``typed``: the add form's fields as sent, kept beside an error."""
        level = request.query.getunicode("level", "") or ""
        people = reports.student_summaries(ctx.store)
        # an uploaded face is one of LEVEL_GROUPS or unsure; "Paused" (an old link) matched no one, said as such
        level_note = "" if level in ("", "none", *LEVEL_GROUPS) else (
            f"{level!r} is no level a face in an uploaded photo has ({', '.join(LEVEL_GROUPS)}): showing every user.")
        if level and not level_note:
            people = [u for u in people if u["dominant"] == level or (level == "none" and u["dominant"] is None)]
        return guard.page("admin_users", title="Users", people=people, level="" if level_note else level,
                          level_note=level_note, groups=LEVEL_GROUPS, roles=ROLES,
                          me=me, locked=ctx.accounts.locked_users(), typed=typed or {}, done=done, error=error,
                          query=page_query(), attempt=new_attempt())

    @app.post("/admin/users")
    def create_user():
        me = guard.require_user(admin=True)
        guard.check_csrf()
        guard.require_recent_password()
        back = "/admin/users" + page_query()
        f = request.forms
        name, role = (f.getunicode("username", "") or "").strip(), f.getunicode("role", "student") or ""
        attempt = f.get("attempt") or ""
        form = f"{name.lower()}\n{role}\n{f.get('temporary') or ''}"  # the same form: same name, role and box
        earlier = submissions.claim(me.id, attempt, form)
        if earlier is not None and (made := ctx.accounts.get(earlier)) is not None:
            guard.flash_redirect(back, created(made))
        try:
            user = ctx.accounts.create_user(name, f.getunicode("password", ""), role, must_change=temporary())
        except AuthError as exc:  # the page again with what was typed (not the password), to correct
            submissions.failed(me.id, attempt, form)
            typed = {"username": f.getunicode("username", ""), "role": role, "temporary": bool(f.get("temporary")),
                     "invalid": exc.field or "password"}  # the field to mark (the password's rules name none)
            return HTTPResponse(render(me, typed, error=f"User not created: {exc}."), 400)
        except BaseException:
            submissions.failed(me.id, attempt, form)
            raise
        submissions.done(me.id, attempt, user.id, form)
        log.info("admin created user %s (%s)", user.username, user.role)
        ctx.store.audit(me.username, "created user", user.username,
                        f"role {user.role}" + (", temporary password" if user.must_change_password else ""))
        guard.flash_redirect(back, created(user))

    @app.post("/admin/users/class")
    def create_class():
        """Several students at once (one name a line): 30 forms, each with a password typed
        once into a masked field, was how a term began. Each gets a generated password to
        replace at the first log-in; the list is shown on this answer only, to print."""
        me = guard.require_user(admin=True)
        guard.check_csrf()
        text = request.forms.getunicode("names", "") or ""
        # a list pasted from a spreadsheet must not be lost to the password asked again
        guard.require_recent_password(keep={"names": text})
        # each name with its line as the admin sees it in the box: empty lines are counted there
        lines, names = map(list, zip(*[(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
                                       if line.strip()])) if text.strip() else ([], [])
        # clicked twice while 30 passwords hash, or the sheet reloaded: the second send got
        # "already exists" and the browser dropped the first answer, the only one with the passwords
        attempt, form = request.forms.get("attempt") or "", "\n".join(names).lower()
        if class_submissions.claim(me.id, attempt, form) is not None:
            sheet = class_sheets.get((me.id, attempt[:64]))
            if sheet is not None:
                return guard.page("admin_users_created", title="Students created", login_at=login_address(), made=sheet, again=True)
            guard.flash_redirect("/admin/users", "These students were created when this list was first sent, and "
                                 "their first passwords shown then. A lost one: Reset password on their row.")
        try:
            if not names:
                raise AuthError("the list is empty: write one user name a line", "names")
            if len(names) > MAX_CLASS:
                raise AuthError(f"at most {MAX_CLASS} names at once ({len(names)} given)", "names")
            made = ctx.accounts.create_students(names, lines)
        except AuthError as exc:
            class_submissions.failed(me.id, attempt, form)
            return HTTPResponse(render(me, {"names": text, "invalid": "names"}, error=f"No student created: {exc}."),
                                400)
        except BaseException:
            class_submissions.failed(me.id, attempt, form)
            raise
        for user, _ in made:
            ctx.store.audit(me.username, "created user", user.username, "role student, temporary password, from a list")
        log.info("admin %s created %d students from a list", me.username, len(made))
        if attempt:  # the sheet for a second send of this very form, for a minute, in memory only
            class_sheets.put((me.id, attempt[:64]), made)
        class_submissions.done(me.id, attempt, made[0][0].id, form)
        guard.forget_kept_forms("/admin/users")  # the list kept over a confirmation did its job
        return guard.page("admin_users_created", title="Students created", login_at=login_address(), made=made, again=False)

    @app.post("/admin/users/students/delete")
    def delete_students():
        """Every student account and its photos at once, for the end of a term: thirty Delete
        buttons, each with its own confirmation, was the only way. Asked first, naming each;
        only the students named on that page go (one added since stays), each audited."""
        me = guard.require_user(admin=True)
        guard.check_csrf()
        guard.require_recent_password()
        people, counts = reports.students_to_remove(ctx.store)
        if request.forms.getunicode("confirm") != "yes":
            if not people:
                guard.flash_redirect("/admin/users", "There is no student account to delete.")
            return guard.page("admin_confirm_students", title="Delete every student", people=people, counts=counts)
        asked = {int(v) for v in request.forms.getall("user") if v.isdigit()}
        gone = photos = 0
        kept_pause = ""
        for person in people:
            if person["id"] not in asked:
                continue
            account = ctx.accounts.get(person["id"])
            theirs = pauses_of(ctx, account) if account is not None else None
            n = ctx.accounts.delete_user(person["id"])
            if theirs is not None:  # after: a press while their photos were being deleted was still theirs
                kept_pause = disown_pause(ctx, theirs, person["username"]) or kept_pause
            ctx.store.audit(me.username, "deleted user", person["username"], f"student, {uploads(n)}, every student")
            gone, photos = gone + 1, photos + n
        log.info("admin %s deleted %d students and %d uploads", me.username, gone, photos)
        guard.flash_redirect("/admin/users", f"Deleted {gone} student account{'' if gone == 1 else 's'} and "
                             f"{uploads(photos)}.{kept_pause}")

    @app.post("/admin/users/<user_id:int>/<action>")
    def user_action(user_id, action):
        me = guard.require_user(admin=True)
        guard.check_csrf()
        guard.require_recent_password()
        back = "/admin/users" + page_query()
        target = ctx.accounts.get(user_id)
        if target is None:
            guard.flash_redirect(back, "That user no longer exists.", error=True)
        if target.id == me.id and action in ("disable", "delete"):
            guard.flash_redirect(back, "You cannot disable or delete your own account.", error=True)
        if target.id == me.id and action == "logout":  # this very log-in too: Your account ends the others
            guard.flash_redirect(back, "To end your other log-ins, use Log out everywhere else on Your account.",
                                 error=True)
        if target.id == me.id and action == "role":  # an admin demoting themselves by a slip locks them out of here
            guard.flash_redirect(back, "You cannot change your own role: another admin changes it.", error=True)
        if target.id == me.id and action == "password":  # here no current password is asked: a stolen session
            guard.flash_redirect(back, "Change your own password on Your account: it asks for the current one.",
                           error=True)
        if action in IRREVERSIBLE and request.forms.getunicode("confirm") != "yes":
            return guard.page("admin_confirm", title="Confirm deletion", target=target, action=action,
                              counts=reports.user_data_counts(ctx.store, user_id), query=page_query())
        if action == "disable":
            try:
                ctx.accounts.set_disabled(user_id, True)
            except AuthError as exc:  # the count above was read before another admin's change landed
                guard.flash_redirect(back, f"{target.username} was not disabled: {exc}.", error=True)
            message = f"Disabled {target.username}: they are logged out and cannot log in."
            audit = ("disabled user", "")
        elif action == "enable":
            ctx.accounts.set_disabled(user_id, False)
            message = f"Enabled {target.username}."
            audit = ("enabled user", "")
        elif action == "password" and not request.forms.getunicode("password"):
            # none typed: a generated one, on this answer only (a redirect's note is read again on a reload)
            password = ctx.accounts.give_password(user_id)
            log.info("admin %s: generated a new password for %s", me.username, target.username)
            ctx.store.audit(me.username, "reset password of", target.username, "generated temporary password")
            return guard.page("admin_password_given", title="New password", target=target, password=password,
                              login_at=login_address(),
                              query=page_query())
        elif action == "password":
            try:
                must_change = temporary()
                ctx.accounts.set_password(user_id, request.forms.getunicode("password", ""), must_change=must_change)
            except AuthError as exc:
                guard.flash_redirect(back, f"Password of {target.username} not reset: {exc}.", error=True)
            message = f"New password set for {target.username}; their sessions ended" + (
                "; they choose their own at the next log-in." if must_change else ".")
            audit = ("reset password of", "temporary password" if must_change else "")
        elif action == "role":
            role = request.forms.getunicode("role", "") or ""
            if role == target.role:
                guard.flash_redirect(back, f"The role of {target.username} is {role} already; nothing changed.")
            try:
                ctx.accounts.set_role(user_id, role)
            except AuthError as exc:
                guard.flash_redirect(back, f"Role of {target.username} not changed: {exc}.", error=True)
            fewer = RIGHTS[role] < RIGHTS[target.role]
            message = f"The role of {target.username} is now {role}" + (
                "; their sessions ended, so they log in again with the new role." if fewer else ".")
            audit = ("changed role of", f"{target.role} to {role}")
        elif action == "logout":  # a log-in left open on a shared computer: the next user would act as them
            n = ctx.accounts.end_sessions(user_id)
            message = (f"Logged {target.username} out of {n} browser{'' if n == 1 else 's'}." if n
                       else f"{target.username} was not logged in anywhere; nothing changed.")
            audit = ("logged out", f"{n} log-in{'' if n == 1 else 's'} ended")
        elif action == "unlock":
            n = ctx.accounts.unlock(target.username)
            message = f"Unlocked {target.username}: {n} failed log-ins forgotten."
            audit = ("unlocked log-in of", f"{n} failed log-ins forgotten")
        elif action == "delete-data":  # an admin's own photos too ("Delete my photos"): their account stays
            n = ctx.store.delete_user_data(user_id)
            message = (f"Deleted {n} of your uploads and their images; your account stays." if target.id == me.id
                       else f"Deleted {uploads(n)} and their images for {target.username}.")
            audit = ("deleted data of", uploads(n))
        elif action == "delete":
            theirs = pauses_of(ctx, target)
            try:
                n = ctx.accounts.delete_user(user_id)
            except AuthError as exc:  # another admin's change landed after this page's own checks
                guard.flash_redirect(back, f"{target.username} was not deleted: {exc}. Nothing was deleted.", error=True)
            kept_pause = disown_pause(ctx, theirs, target.username)  # after: no press of theirs can follow
            message = f"Deleted {target.username} and {uploads(n)}.{kept_pause}"
            audit = ("deleted user", f"{target.role}, {uploads(n)}")
        else:
            return HTTPResponse(guard.page("error", title="Unknown action",
                                           message=f"{action!r} is not a user action."), 404)
        log.info("admin %s: %s", me.username, message)
        ctx.store.audit(me.username, audit[0], target.username, audit[1])
        guard.flash_redirect(back, message)
