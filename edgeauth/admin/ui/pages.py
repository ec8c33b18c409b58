"""What each console page shows, and the console's writes: plain functions over the admin
context, no HTTP in them (app.py turns requests into calls of these and their results into
pages).

Rule 1: every write goes through the admin API's own functions (schemas for the checks,
consumers/credentials/tokens for the store calls), so the console refuses and allows exactly
what the API does, config-managed entities included.
Rule 2: nothing here returns a secret or a token value, except the clear secret of an
application just created or rotated, which the caller shows once and never stores.
Rule 3: a problem with what the operator typed is an AdminError, which `messages()` turns
into sentences naming the form's fields as the form labels them.
Rule 4: counts are bounded: a list is read at most COUNT_LIMIT rows deep, and a larger
count is shown as "more than" it.
Rule 5: a write that shows a secret happens once per form, however often the browser sends
it (a reload of the page that answered it sends it again): the creation form carries the new
application's client id, drawn with the form, so a second post meets the first's; the rotate
form carries a mark of the secret it replaces (session.py), which a second post no longer
matches. Either repeat is an AlreadySent (409) that writes nothing and shows no secret.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from edgeauth import crypto
from edgeauth.admin import schemas
from edgeauth.admin.consumers import find_consumer, make_consumer, unmanaged
from edgeauth.admin.credentials import (
    apply_patch,
    find_credential,
    new_credential,
    patch_of,
    unmanaged_app,
)
from edgeauth.admin.http import AdminContext
from edgeauth.admin.tokens import find_token
from edgeauth.admin.ui import session
from edgeauth.config import ServiceSettings, Settings
from edgeauth.errors import (
    AdminError,
    BadRequest,
    NotFound,
    SchemaViolation,
    UniqueViolation,
)
from edgeauth.models import Consumer, Credential, TokenView
from edgeauth.store.base import Page, Store, TokenFilter

T = TypeVar("T")

PAGE_SIZE = 25  # consumers per page
TOKENS_PAGE = 100
COUNT_LIMIT = 10_000
SCAN_LIMIT = 100_000  # consumers a search reads at most
READ_SIZE = 1000  # the store's largest page
REVOCATION_TAIL = 10
MIN_WINDOW = 5.0  # seconds: a newer sample of the traffic figures replaces the older one
SECRET_KEYS = frozenset({"dsn", "client_secret", "client_secret_hash", "provision_key"})
REDACTED = "[redacted]"
GRANTS = (
    ("enable_authorization_code", "authorization code"),
    ("enable_client_credentials", "client credentials"),
    ("enable_password_grant", "password"),
    ("enable_implicit_grant", "implicit"),
)


def name_of(consumer: Consumer) -> str:
    """How a page names a consumer: username, else custom ID, else id."""
    return consumer.username or consumer.custom_id or consumer.id


def when(timestamp: float | None) -> str:
    """A time as operators read it, in UTC; None: never."""
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# what the operator typed: its problems as sentences (Rule 3) -----------------------------------
CONSUMER_LABELS = {"username": "Username", "custom_id": "Custom ID"}
APPLICATION_LABELS = {
    "client_id": "Client id",
    "name": "Application name",
    "redirect_uris": "Redirect URIs",
    "client_secret": "Secret",
}
ENTITY_RULE = "Give a username, a custom ID, or both."
ALREADY_CREATED = (
    "An application with client id {client_id} already exists: this form was sent before"
    " (reloading the page that showed the secret sends it again), so nothing was created."
    " The secret was shown once; if it was not copied, rotate it."
)
ALREADY_ROTATED = (
    "The secret of {name} was already rotated since this form was shown (reloading the page"
    " that showed the new secret sends it again), so it was not rotated again: the secret"
    " shown last is the one that works."
)


class AlreadySent(AdminError):
    """A form that shows a secret, sent again (Rule 5)."""

    status = 409


def messages(exc: AdminError, labels: dict[str, str]) -> list[str]:
    """One sentence per problem, naming the field by its label (per line for URI lists)."""
    if isinstance(exc, SchemaViolation):
        found = []
        for name, problem in exc.fields.items():
            if name == "@entity":
                found.append(ENTITY_RULE)
            elif isinstance(problem, list):
                label = labels.get(name, name)
                found.extend(
                    f"{label}, line {i}: {p}" for i, p in enumerate(problem, 1) if p is not None
                )
            else:
                found.append(f"{labels.get(name, name)}: {problem}.")
        return found
    if isinstance(exc, UniqueViolation):
        label = labels.get(exc.field, exc.field)
        return [f"{label}: '{exc.value}' is already taken."]
    return [str(exc)]


def _text(value: str) -> str | None:
    """A form field: surrounding blanks dropped, empty as not given."""
    return value.strip() or None


def lines_of(text: str) -> list[str]:
    """A textarea's non-blank lines, trimmed."""
    return [line.strip() for line in text.splitlines() if line.strip()]


Reader = Callable[[str | None], Awaitable[Page[T]]]


async def _all(read: Reader[T], limit: int) -> tuple[list[T], bool]:
    """Up to `limit` items over the store's pages; True when more were left unread."""
    items: list[T] = []
    cursor: str | None = None
    while True:
        page = await read(cursor)
        items.extend(page.items)
        if page.next is None:
            return items[:limit], len(items) > limit
        if len(items) >= limit:
            return items[:limit], True
        cursor = page.next


@dataclass(frozen=True, slots=True)
class Count:
    n: int
    more: bool  # at least n, possibly more (Rule 4)

    def __str__(self) -> str:
        return f"more than {self.n:,}" if self.more else f"{self.n:,}"


async def _count(read: Reader[Any]) -> Count:
    items, more = await _all(read, COUNT_LIMIT)
    return Count(len(items), more)


# overview --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Traffic:
    """Totals since the metrics began: per service, requests, 5xx answers and the
    request-latency histogram as (upper bound in ms, cumulative count)."""

    requests: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reloads:
    succeeded: int | None = None  # None: no supervisor figures (not run by the supervisor)
    failed: int | None = None
    last_success: float | None = None


def read_metrics(text: str) -> tuple[Traffic, Reloads]:
    """The figures the console shows, from the metrics' text exposition."""
    traffic = Traffic()
    reloads: dict[str, float] = {}
    last_success = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            service = labels.get("service", "")
            if sample.name == "edgeauth_http_requests_total":
                traffic.requests[service] = traffic.requests.get(service, 0) + value
                if labels.get("code", "").startswith("5"):
                    traffic.errors[service] = traffic.errors.get(service, 0) + value
            elif sample.name == "edgeauth_request_latency_ms_bucket":
                bound = float(labels["le"])
                per = traffic.buckets.setdefault(service, {})
                per[bound] = per.get(bound, 0) + value
            elif sample.name == "edgeauth_config_reloads_total":
                reloads[labels.get("result", "")] = value
            elif sample.name == "edgeauth_config_last_reload_success_timestamp_seconds":
                last_success = value
    if not reloads:
        return traffic, Reloads(last_success=last_success)
    return traffic, Reloads(
        int(reloads.get("success", 0)), int(reloads.get("failure", 0)), last_success
    )


class Sampler:
    """The previous traffic figures this worker read, so that the overview shows rates over
    a recent window rather than since the start (the first window starts with the worker)."""

    def __init__(self, started: float) -> None:
        self.at = started
        self.traffic = Traffic()

    def window(self, now: float, current: Traffic) -> tuple[float, Traffic]:
        """(seconds, the figures at their start); the window restarts once it is old enough."""
        seconds, before = max(now - self.at, 1e-3), self.traffic
        if seconds >= MIN_WINDOW:
            self.at, self.traffic = now, current
        return seconds, before


@dataclass(frozen=True, slots=True)
class Figures:
    rate: str  # requests per second
    errors: str  # share of 5xx answers
    p99: str


def p99_of(now: dict[float, float], before: dict[float, float]) -> str:
    """The bucket bound that 99 % of the window's requests stayed within."""
    deltas = sorted((bound, count - before.get(bound, 0)) for bound, count in now.items())
    total = deltas[-1][1] if deltas else 0
    if total <= 0:
        return "—"
    for bound, cumulative in deltas:
        if cumulative >= 0.99 * total:
            if math.isinf(bound):
                return f"over {deltas[-2][0]:g} ms" if len(deltas) > 1 else "—"
            return f"≤ {bound:g} ms"
    return "—"


def figures(service: str, seconds: float, now: Traffic, before: Traffic) -> Figures:
    requests = now.requests.get(service, 0) - before.requests.get(service, 0)
    errors = now.errors.get(service, 0) - before.errors.get(service, 0)
    share = f"{100 * errors / requests:.1f} %" if requests > 0 else "—"
    buckets = now.buckets.get(service, {})
    return Figures(
        f"{requests / seconds:.2f}", share, p99_of(buckets, before.buckets.get(service, {}))
    )


@dataclass(frozen=True, slots=True)
class RouteRow:
    name: str
    paths: str
    methods: str
    hosts: str
    scopes: str


@dataclass(frozen=True, slots=True)
class ServiceRow:
    name: str
    url: str
    protection: str  # "public" or "OAuth 2.0"
    scopes: str
    grants: str
    routes: tuple[RouteRow, ...]
    figures: Figures


def _service_row(s: ServiceSettings, traffic: Figures) -> ServiceRow:
    oauth2 = s.oauth2
    routes = tuple(
        RouteRow(
            r.name,
            " ".join(r.paths),
            " ".join(r.methods) or "any",
            " ".join(r.hosts) or "any",
            " ".join(r.required_scopes) or "—",
        )
        for r in s.routes
    )
    if oauth2 is None:
        return ServiceRow(s.name, s.url, "public", "—", "—", routes, traffic)
    grants = [label for name, label in GRANTS if getattr(oauth2, name)]
    return ServiceRow(
        s.name,
        s.url,
        "OAuth 2.0",
        " ".join(oauth2.scopes) or "—",
        ", ".join(grants) or "none (tokens from the admin API only)",
        routes,
        traffic,
    )


@dataclass(frozen=True, slots=True)
class RevocationRow:
    seq: int
    token_id: str  # "" when the entry names no stored token
    client_id: str
    user: str
    what: str  # the entry as a digest label when it names no stored token


@dataclass(frozen=True, slots=True)
class Overview:
    services: tuple[ServiceRow, ...]
    window: float
    metrics_enabled: bool
    consumers: Count
    applications: Count
    live_tokens: Count
    revocations: tuple[RevocationRow, ...]
    backend: str
    reachable: bool


async def _revocations(store: Store) -> tuple[RevocationRow, ...]:
    """The newest entries of the revocation log, newest first, by the token each names."""
    head = await store.revocation_head()
    rows = []
    for seq, digest in await store.revocations_since(max(0, head - REVOCATION_TAIL)):
        view = await store.find_token(digest)
        if view is None:
            label = "sha256:" + digest.hex()[:16]
            rows.append(RevocationRow(seq, "", "", "", f"{label} (a consumer change, or swept)"))
        else:
            user = view.token.authenticated_userid or ""
            rows.append(RevocationRow(seq, view.token.id, view.client_id, user, ""))
    return tuple(reversed(rows))


async def overview(c: AdminContext, sampler: Sampler, metrics_text: str) -> Overview:
    store, now = c.store, c.clock()
    current, _ = read_metrics(metrics_text)
    seconds, before = sampler.window(now, current)
    services = tuple(
        _service_row(s, figures(s.name, seconds, current, before)) for s in c.settings.services
    )
    backend = c.settings.store.backend
    if not await store.ping():
        none = Count(0, False)
        return Overview(
            services, seconds, c.settings.metrics.enabled, none, none, none, (), backend, False
        )
    return Overview(
        services=services,
        window=seconds,
        metrics_enabled=c.settings.metrics.enabled,
        consumers=await _count(lambda after: store.list_consumers(after=after, size=READ_SIZE)),
        applications=await _count(
            lambda after: store.list_credentials(after=after, size=READ_SIZE)
        ),
        live_tokens=await _count(
            lambda after: store.list_tokens(
                TokenFilter(active=True), now, after=after, size=READ_SIZE
            )
        ),
        revocations=await _revocations(store),
        backend=backend,
        reachable=True,
    )


# consumers -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ConsumerList:
    items: tuple[Consumer, ...]
    page: int
    more: bool  # a next page exists
    q: str
    truncated: bool  # the search stopped at SCAN_LIMIT consumers


def page_number(raw: str | None) -> int:
    if raw is None or raw == "":
        return 1
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 100_000:
        raise BadRequest("page must be a number from 1")
    return int(raw)


def _matches(c: Consumer, q: str) -> bool:
    needle = q.casefold()
    return any(needle in (v or "").casefold() for v in (c.username, c.custom_id, c.id))


async def consumer_list(store: Store, q: str, page: int) -> ConsumerList:
    """Oldest first; `q` keeps those whose username, custom ID or id contains it (any case)."""
    wanted = page * PAGE_SIZE + 1  # one more than the page shows: is there a next page?
    found: list[Consumer] = []
    cursor: str | None = None
    scanned = 0
    while len(found) < wanted:
        result = await store.list_consumers(after=cursor, size=READ_SIZE)
        scanned += len(result.items)
        found.extend(x for x in result.items if not q or _matches(x, q))
        cursor = result.next
        if cursor is None or scanned >= SCAN_LIMIT:
            break
    start = (page - 1) * PAGE_SIZE
    shown = tuple(found[start : start + PAGE_SIZE])
    truncated = cursor is not None and scanned >= SCAN_LIMIT
    return ConsumerList(shown, page, len(found) > start + PAGE_SIZE, q, truncated)


async def create_consumer(c: AdminContext, username: str, custom_id: str) -> Consumer:
    body = {"username": _text(username), "custom_id": _text(custom_id)}
    given = schemas.consumer({k: v for k, v in body.items() if v is not None}, now=c.clock())
    return await make_consumer(c.store, given)


@dataclass(frozen=True, slots=True)
class ConsumerPage:
    consumer: Consumer
    applications: tuple[Credential, ...]
    more: bool  # more applications than shown


async def consumer_page(store: Store, key: str) -> ConsumerPage:
    consumer = await find_consumer(store, key)
    apps, more = await _all(
        lambda after: store.list_credentials(consumer_id=consumer.id, after=after, size=READ_SIZE),
        COUNT_LIMIT,
    )
    return ConsumerPage(consumer, tuple(apps), more)


async def deletable_consumer(store: Store, key: str) -> Consumer:
    """The consumer, if the console may delete it (not config's)."""
    return unmanaged(await find_consumer(store, key))


async def delete_consumer(store: Store, key: str) -> Consumer:
    found = await deletable_consumer(store, key)
    await store.delete_consumer(found.id)
    return found


# applications ----------------------------------------------------------------------------------
async def application(store: Store, consumer_key: str, app_key: str) -> tuple[Consumer, Credential]:
    """The application `app_key` (id or client id) of the consumer `consumer_key`, or 404."""
    consumer = await find_consumer(store, consumer_key)
    return consumer, await find_credential(store, app_key, consumer.id)


async def create_application(
    c: AdminContext, consumer_key: str, name: str, redirect_uris: str, client_id: str = ""
) -> tuple[Credential, str | None]:
    """A confidential application with a generated secret; the secret in clear is returned
    to be shown once (Rule 2). The client id is the form's (Rule 5), checked as the API
    checks one, or generated when the form gave none."""
    consumer = await find_consumer(c.store, consumer_key)
    body: dict[str, object] = {"redirect_uris": lines_of(redirect_uris)}
    if _text(name) is not None:
        body["name"] = name.strip()
    if _text(client_id) is not None:
        body["client_id"] = client_id.strip()
    given = schemas.credential(body, now=c.clock())
    try:
        return await new_credential(c.store, consumer, given)
    except UniqueViolation as exc:
        if exc.field != "client_id":
            raise
        raise AlreadySent(ALREADY_CREATED.format(client_id=exc.value)) from exc


async def _change(c: AdminContext, found: Credential, body: dict[str, object]) -> Credential:
    """A PATCH of the application, as the API makes it."""
    given = schemas.credential(body, now=c.clock(), current=found, partial=True)
    return await apply_patch(c.store, found, await patch_of(body, given))


async def rotate_secret(
    c: AdminContext, consumer_key: str, app_key: str, mark: str
) -> tuple[Credential, str]:
    """A new generated secret (the old one stops working, and the tokens issued with it are
    revoked, as a changed secret does through the API), if `mark` is still that of the
    current secret (Rule 5)."""
    _, found = await application(c.store, consumer_key, app_key)
    if not session.secret_unchanged(mark, c.token, found.id, found.secret_hash):
        raise AlreadySent(ALREADY_ROTATED.format(name=found.name or found.client_id))
    secret = crypto.mint()
    return await _change(c, unmanaged_app(found), {"client_secret": secret}), secret


async def set_redirect_uris(
    c: AdminContext, consumer_key: str, app_key: str, redirect_uris: str
) -> Credential:
    _, found = await application(c.store, consumer_key, app_key)
    return await _change(c, unmanaged_app(found), {"redirect_uris": lines_of(redirect_uris)})


async def deletable_application(
    store: Store, consumer_key: str, app_key: str
) -> tuple[Consumer, Credential]:
    consumer, found = await application(store, consumer_key, app_key)
    return consumer, unmanaged_app(found)


async def delete_application(store: Store, consumer_key: str, app_key: str) -> Credential:
    _, found = await deletable_application(store, consumer_key, app_key)
    await store.delete_credential(found.id)
    return found


# tokens ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TokenQuery:
    """The tokens page's filters as typed: consumer (username or id), application (client
    id or id), authenticated user."""

    consumer: str = ""
    application: str = ""
    user: str = ""

    @property
    def bulk(self) -> bool:
        """Whether "revoke all" applies: it needs a user or an application."""
        return bool(self.user or self.application)

    def params(self) -> dict[str, str]:
        given = {"consumer": self.consumer, "application": self.application, "user": self.user}
        return {name: value for name, value in given.items() if value}


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: str
    consumer: str
    client_id: str
    user: str
    scope: str
    expires: str


@dataclass(frozen=True, slots=True)
class TokenList:
    rows: tuple[TokenRow, ...]
    next: str | None  # the store's cursor for the next page
    unknown: str  # why nothing can match ("" when the filters name what exists)


def _row(view: TokenView) -> TokenRow:
    t = view.token
    return TokenRow(
        t.id,
        view.username or view.custom_id or view.consumer_id,
        view.client_id,
        t.authenticated_userid or "",
        t.scope,
        when(t.expires_at),
    )


async def token_filter(store: Store, query: TokenQuery) -> tuple[TokenFilter, str]:
    """The live tokens the query names, and "" or why no token can match."""
    consumer_id = credential_id = None
    if query.consumer:
        try:
            consumer_id = (await find_consumer(store, query.consumer)).id
        except NotFound:
            return TokenFilter(), f"No consumer is named '{query.consumer}'."
    if query.application:
        try:
            credential_id = (await find_credential(store, query.application)).id
        except NotFound:
            return TokenFilter(), f"No application has the client id '{query.application}'."
    which = TokenFilter(
        authenticated_userid=query.user or None,
        credential_id=credential_id,
        consumer_id=consumer_id,
        active=True,
    )
    return which, ""


async def token_list(c: AdminContext, query: TokenQuery, after: str | None) -> TokenList:
    which, unknown = await token_filter(c.store, query)
    if unknown:
        return TokenList((), None, unknown)
    result = await c.store.list_tokens(which, c.clock(), after=after, size=TOKENS_PAGE)
    return TokenList(tuple(_row(v) for v in result.items), result.next, "")


async def revoke_token(c: AdminContext, token_id: str) -> None:
    """By id only: a token's value never travels in a console URL."""
    if not schemas.is_uuid(token_id):
        raise NotFound()
    found = await find_token(c.store, token_id)
    await c.store.revoke_token(found.token.id, c.clock())


async def _bulk_filter(c: AdminContext, query: TokenQuery) -> TokenFilter:
    """The tokens a "revoke all" of `query` stands for, counted or revoked alike: it needs a
    user or an application, and every filter it names must name something."""
    if not query.bulk:
        raise BadRequest("Revoking all tokens needs an authenticated user or an application.")
    which, unknown = await token_filter(c.store, query)
    if unknown:
        raise BadRequest(unknown)
    return which


async def bulk_count(c: AdminContext, query: TokenQuery) -> Count:
    """How many live tokens a "revoke all" of `query` would revoke."""
    which = await _bulk_filter(c, query)
    now = c.clock()
    return await _count(lambda after: c.store.list_tokens(which, now, after=after, size=READ_SIZE))


async def revoke_all(c: AdminContext, query: TokenQuery) -> int:
    return await c.store.revoke_tokens(await _bulk_filter(c, query), c.clock())


# configuration ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Section:
    title: str
    rows: tuple[tuple[str, str], ...]


def _shown(name: str, value: object) -> str:
    if name in SECRET_KEYS and value not in (None, ""):
        return REDACTED
    if value is None or value == "":
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value) if value else "(none)"
    return str(value)


def _label(item: object) -> str:
    for attribute in ("name", "username", "client_id"):
        value = getattr(item, attribute, None)
        if isinstance(value, str):
            return value
    return "?"


def _sections(obj: object, title: str, out: list[Section]) -> None:
    rows: list[tuple[str, str]] = []
    nested: list[tuple[str, object]] = []
    for f in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        path = f"{title}.{f.name}" if title else f.name
        if is_dataclass(value):
            nested.append((path, value))
        elif isinstance(value, tuple) and value and is_dataclass(value[0]):
            nested.extend((f"{path}[{_label(item)}]", item) for item in value)
        else:
            rows.append((f.name, _shown(f.name, value)))
    if rows:
        out.append(Section(title or "file", tuple(rows)))
    for path, value in nested:
        _sections(value, path, out)


def config_sections(settings: Settings) -> tuple[Section, ...]:
    """The running configuration as parsed (defaults included), secrets redacted."""
    out: list[Section] = []
    _sections(settings, "", out)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ConfigPage:
    sections: tuple[Section, ...]
    loaded_at: str  # when this worker loaded the configuration it runs
    reloads: Reloads


def config_page(c: AdminContext, metrics_text: str) -> ConfigPage:
    _, reloads = read_metrics(metrics_text)
    return ConfigPage(config_sections(c.settings), when(c.started), reloads)
