"""Rules shared by the grants that trust the resource owner's backend (Kong's provision key).

The backend authenticates the user itself and vouches for `authenticated_userid` with the
service's provision key; the gateway never sees a user password. The user id reaches the
service's backend as `X-Authenticated-Userid`: one with a control character is refused.
"""

from __future__ import annotations

from edgeauth import crypto
from edgeauth.config.schema import has_control
from edgeauth.errors import InvalidAuthenticatedUser, InvalidProvisionKey, InvalidRequest
from edgeauth.oauth.params import Params
from edgeauth.oauth.policy import Policy


def check_provision_key(params: Params, policy: Policy) -> None:
    sent = params.get("provision_key")
    if not sent or not crypto.same(sent, policy.provision_key):
        raise InvalidProvisionKey()


def given_userid(params: Params) -> str | None:
    """The `authenticated_userid` sent, or None when absent, empty or only whitespace: a blank
    user id names nobody, and backends would see an empty `X-Authenticated-Userid`. Control
    characters (C0, DEL, C1) would be forwarded raw in that header, CR and LF not at all (the
    token could only ever get 502): refused."""
    userid = params.get("authenticated_userid")
    if not userid or userid.isspace():
        return None
    if has_control(userid):
        raise InvalidRequest("The authenticated_userid must not contain control characters")
    return userid


def authenticated_userid(params: Params) -> str:
    """The user id a grant must carry (Kong's `invalid_authenticated_userid` otherwise)."""
    userid = given_userid(params)
    if userid is None:
        raise InvalidAuthenticatedUser()
    return userid
