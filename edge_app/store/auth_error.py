"""The account error every refusal of an account's page or log-in raises (``AuthError``).

Its own module so that both ``accounts`` (users and sessions) and ``login_throttle`` (the
failed log-ins), which ``accounts`` uses, can raise its kinds without importing each other.
"""
from __future__ import annotations


class AuthError(ValueError):
    """A user-facing account problem (bad name, weak password, unknown user). ``field``: the
    form field at fault, for the page to mark and focus ("username", "role", "current",
    "new", "again"); empty for the password being set (each form names its own field)."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field
