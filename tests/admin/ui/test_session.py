"""Console sessions and CSRF tokens (admin/ui/session.py), pure: a session is valid only
under the admin token that signed it and before its expiry; a CSRF token only with its own
session."""

from __future__ import annotations

import pytest

from edgeauth.admin.ui import session
from edgeauth.admin.ui.session import State

TOKEN = "admin-token-" + "a" * 40
NOW = 1_800_000_000.0


def test_a_new_session_is_valid_until_its_expiry() -> None:
    value = session.issue(TOKEN, NOW, 60)
    assert session.read(value, TOKEN, NOW).state is State.VALID
    assert session.read(value, TOKEN, NOW + 59).state is State.VALID
    late = session.read(value, TOKEN, NOW + 60)
    assert late.state is State.EXPIRED
    assert late.expires_at == int(NOW) + 60


def test_the_cookie_outlives_its_session() -> None:
    """A browser drops a cookie at its Max-Age: the cookie must still be sent after the
    expiry for the console to say the session expired (it is refused all the same)."""
    assert session.cookie_max_age(60) == 60 + session.COOKIE_MARGIN
    assert session.COOKIE_MARGIN >= 60
    value = session.issue(TOKEN, NOW, 60)
    assert session.read(value, TOKEN, NOW + 60 + session.COOKIE_MARGIN).state is State.EXPIRED


def test_each_session_is_new() -> None:
    assert session.issue(TOKEN, NOW, 60) != session.issue(TOKEN, NOW, 60)


def test_another_admin_token_signs_every_session_out() -> None:
    value = session.issue(TOKEN, NOW, 60)
    assert session.read(value, TOKEN + "x", NOW).state is State.INVALID


@pytest.mark.parametrize(
    "change",
    [
        lambda v: v.replace(v.split(".")[0], str(int(v.split(".")[0]) + 3600), 1),  # expiry
        lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),  # mac
        lambda v: v.split(".", 1)[1],  # a part missing
        lambda v: v + ".x",  # a part too many
        lambda v: "é" + v,  # not ASCII
        lambda v: v.replace(".", "." + "n" * 100, 1),  # a part too long
        lambda v: "",
    ],
)
def test_a_changed_session_is_not_valid(change: object) -> None:
    value = session.issue(TOKEN, NOW, 60)
    changed = change(value)  # type: ignore[operator]
    assert session.read(changed, TOKEN, NOW).state in (State.INVALID, State.MISSING)


def test_a_missing_cookie_is_missing() -> None:
    assert session.read(None, TOKEN, NOW).state is State.MISSING


def test_a_csrf_token_is_its_sessions_only() -> None:
    first = session.read(session.issue(TOKEN, NOW, 60), TOKEN, NOW)
    second = session.read(session.issue(TOKEN, NOW, 60), TOKEN, NOW)
    token = session.csrf_token(TOKEN, first)
    assert session.csrf_valid(token, TOKEN, first)
    assert not session.csrf_valid(token, TOKEN, second)
    assert not session.csrf_valid(None, TOKEN, first)
    assert not session.csrf_valid("", TOKEN, first)
    assert not session.csrf_valid(token + "é", TOKEN, first)
    assert not session.csrf_valid(token, TOKEN + "x", first)


def test_an_expired_session_signs_no_form() -> None:
    value = session.issue(TOKEN, NOW, 60)
    live = session.read(value, TOKEN, NOW)
    token = session.csrf_token(TOKEN, live)
    assert not session.csrf_valid(token, TOKEN, session.read(value, TOKEN, NOW + 61))
