"""Saving an admin form that another admin may have open at the same time.

A settings form holds what its page showed when it was opened. Two admins each with the
page open: saving the later form whole would put the first admin's change back unseen.
So a form carries the values it was opened with (its ``base``, a hidden field written by
``base_field``) and a save changes only what its admin changed (``own_changes``); the
same setting changed by both, to different values, is a conflict, refused and named.
Used by Admin -> Settings and Admin -> Classroom."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def ticked(raw: str | None) -> bool:
    """A checkbox field's value: browsers send "on" for a ticked box and nothing for an
    unticked one; scripts may send "true" or "1"."""
    return raw in ("on", "true", "1")


def in_the_forms_words(message: str, labels: Mapping[str, str]) -> tuple[str, str]:
    """A refusal as the form words it, and the field at fault (its dotted key, "" if none):
    the schema says "mqtt.heartbeat_s = 2 is not allowed", the config file's words, beside a
    field labelled "Heartbeat (seconds)". ``labels``: dotted key -> the form's label."""
    for dotted, label in labels.items():
        if message.startswith(f"{dotted} = "):
            return f"{label}: {message.removeprefix(f'{dotted} = ')}", dotted
    for dotted, label in labels.items():  # the page's own checks already name the label
        if message.startswith(f"{label}: "):
            return message, dotted
    return message, ""


def base_field(now: dict) -> str:
    """The hidden ``base`` field's value: the settings ``now`` the page is showing. Never
    put a secret in ``now``: the page would carry it."""
    return json.dumps(now)


def read_base(raw: str | None, now: dict) -> dict | None:
    """The settings a form was opened with (its ``base`` field), or None for a form without
    one (a script's) or with one that does not hold the keys of ``now``: then every field it
    sends is taken as changed."""
    try:
        base = json.loads(raw or "")
    except ValueError:
        return None
    if not isinstance(base, dict):
        return None
    for key, value in now.items():
        if key not in base or (isinstance(value, dict) and not isinstance(base[key], dict)):
            return None
    return base


def own_changes(sent: dict, base: dict | None, now: dict, labels: dict[str, str]) -> tuple[dict, list[str]]:
    """What this admin changed on their form (``sent`` against ``base``, the values it was
    opened with), and the settings another admin changed meanwhile to something else.

    ``now``: the settings as they are; ``labels``: each key's name on the form. A value that
    is a dict (the emotion mapping) is compared item by item and saved whole, this admin's
    items over ``now``'s. Only the fields this admin changed are returned; one that another
    admin changed too, to a different value, is a conflict: the caller saves nothing and
    shows the conflicts. A key of ``sent`` missing from ``now`` (a secret the page never
    shows, such as a typed password) is a change whenever it is sent. ``base`` None (a
    form without one): everything sent is a change, no conflict."""
    if base is None:
        return dict(sent), []
    changes: dict[str, Any] = {}
    conflicts = []
    for key, value in sent.items():
        if key not in now:
            changes[key] = value
        elif isinstance(value, dict):
            items = {}
            for item, chosen in value.items():
                was, current = base[key].get(item), now[key].get(item)
                if chosen != was:
                    items[item] = chosen
                    if current != was and current != chosen:
                        conflicts.append(f"{item} is now {current!r} (you typed {chosen!r})")
            if items:
                changes[key] = {**now[key], **items}
        elif value != base[key]:
            changes[key] = value
            if now[key] != base[key] and now[key] != value:
                conflicts.append(f"{labels.get(key, key)} is now {now[key]!r} (you typed {value!r})")
    return changes, conflicts
