"""Rules shared by the grants that trust the resource owner's backend (Kong's provision key).

The backend authenticates the user itself and vouches for `authenticated_userid` with the
service's provision key; the gateway never sees a user password.
"""

from __future__ import annotations

from edgeauth import crypto
from edgeauth.errors import InvalidAuthenticatedUser, InvalidProvisionKey
from edgeauth.oauth.params import Params
from edgeauth.oauth.policy import Policy


def check_provision_key(params: Params, policy: Policy) -> None:
    sent = params.get("provision_key")
    if not sent or not crypto.same(sent, policy.provision_key):
        raise InvalidProvisionKey()


def given_userid(params: Params) -> str | None:
    """The `authenticated_userid` sent, or None when absent, empty or only whitespace: a blank
    user id names nobody, and backends would see an empty `X-Authenticated-Userid`."""
    userid = params.get("authenticated_userid")
    return userid if userid and not userid.isspace() else None


def authenticated_userid(params: Params) -> str:
    """The user id a grant must carry (Kong's `invalid_authenticated_userid` otherwise)."""
    userid = given_userid(params)
    if userid is None:
        raise InvalidAuthenticatedUser()
    return userid
