"""CSRF: one random token per session, in every POST form, compared in constant time.

The token lives in the signed session cookie (SameSite=strict as well); a POST without it, or with another
one, is refused with 403 before anything reaches the database.
"""

from __future__ import annotations

import secrets

from starlette.requests import Request

FIELD = "csrf_token"


def token(request: Request) -> str:
    tok = request.session.get(FIELD)
    if not tok:
        tok = request.session[FIELD] = secrets.token_urlsafe(32)
    return tok


def valid(request: Request, form) -> bool:
    expected = request.session.get(FIELD)
    given = form.get(FIELD)
    return bool(expected) and isinstance(given, str) and secrets.compare_digest(expected, given)
