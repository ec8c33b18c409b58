"""What every grant receives and returns; grants are looked up by `grant_type` in a table.

Each grant module has `exchange`, the I/O of one token request, and `judge`, its pure rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from edgeauth.models import Credential
from edgeauth.oauth.issuer import Minted
from edgeauth.oauth.params import Params
from edgeauth.oauth.policy import Policy
from edgeauth.store.base import Store


@dataclass(frozen=True, slots=True)
class GrantContext:
    policy: Policy
    store: Store
    now: float


Grant = Callable[[Params, Credential, GrantContext], Awaitable[Minted]]
