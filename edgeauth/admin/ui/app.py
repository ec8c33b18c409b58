"""The console's routes, its session guard and its headers: an aiohttp sub-application the
admin app mounts at `/ui` when `[admin] ui = true`. Handlers are thin: pages.py gathers and
writes, the templates render.

Rule 1: a page needs a valid session (session.py): without one, a GET is sent (303) to the
sign-in page with its own path as `next`, a POST gets the sign-in page itself (401), and
either says "Your session has expired. Sign in again." when the browser sent a session this
console no longer accepts. Only the sign-in page and the static files are served without one.
Rule 2: every POST but the sign-in must carry the session's CSRF token in its `csrf` field,
and a POST whose Origin header is present must come from this listener's origin; else 403.
Rule 3: every response under /ui/ carries HEADERS (a CSP without inline script or style, no
framing, no caching, no referrer off the console); the cookie is HttpOnly, SameSite=Strict,
Path=/ui/, Secure when the admin listener has TLS, and outlives its session (session.py
Rule 4) so that an expired one is told from none.
Rule 4: a problem with what was typed gives the same page back (400) with the form as typed
and a sentence per problem, nothing written; no error reaches the browser as a stack trace.
A path or query that is not UTF-8 once percent-decoded is a 400 page, as in the API.
Rule 5: writes are logged by the admin audit trail like the API's (admin/trail.py), as the
console's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from edgeauth import crypto, metrics
from edgeauth.admin.http import CREATED, AdminContext, Handler, body_of, check_target
from edgeauth.admin.ui import pages, session
from edgeauth.errors import AdminError, NotFound, StoreError, StoreUnavailable
from edgeauth.models import Consumer, Credential

log = logging.getLogger(__name__)

PREFIX = "/ui"
LOGIN = f"{PREFIX}/login"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on the
    # console's own form posts, and Rule 2 could not tell them from another site's
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
STATIC = {"console.js": "text/javascript", "console.css": "text/css"}
OPEN = frozenset({LOGIN, *(f"{PREFIX}/static/{name}" for name in STATIC)})
EXPIRED = "Your session has expired. Sign in again."
FORGED = "The form has expired or did not come from this console."
NOTICES = {
    "expired": EXPIRED,
    "signed_out": "Signed out.",
    "created": "Consumer created.",
    "consumer_deleted": "Consumer deleted.",
    "application_deleted": "Application deleted.",
    "saved": "Redirect URIs saved.",
    "revoked": "Token revoked.",
}


@dataclass
class Console:
    context: AdminContext
    templates: jinja2.Environment
    sampler: pages.Sampler
    static: dict[str, bytes]
    secure: bool  # the admin listener has TLS: the cookie is Secure
    lifetime: int  # seconds a session lasts


CONSOLE = web.AppKey("console", Console)
SESSION = web.RequestKey("console_session", session.Session)
FORM = web.RequestKey("console_form", dict)


def console(request: web.Request) -> Console:
    return request.config_dict[CONSOLE]


def field(request: web.Request, name: str) -> str:
    """A form field as text ("" when absent or repeated)."""
    value = request.get(FORM, {}).get(name, "")
    return value if isinstance(value, str) else ""


def seg(value: str) -> str:
    """A path segment, percent-encoded."""
    return quote(value, safe="")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("edgeauth.admin.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["seg"] = seg
    env.filters["when"] = pages.when
    return env


def render(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    """A page; signed-in pages get the CSRF token their forms carry."""
    found = request.get(SESSION)
    signed_in = found is not None and found.state is session.State.VALID
    csrf = session.csrf_token(console(request).context.token, found) if signed_in and found else ""
    return _html(request, template, status, signed_in=signed_in, csrf=csrf, **values)


def _html(request: web.Request, template: str, status: int, **values: Any) -> web.Response:
    notice = NOTICES.get(request.query.get("notice", ""), "")
    page = console(request).templates.get_template(template)
    body = page.render(notice=notice, **{"section": "", "errors": [], **values})
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def see_other(location: str, **params: str) -> web.HTTPSeeOther:
    query = urlencode({k: v for k, v in params.items() if v})
    return web.HTTPSeeOther(f"{location}?{query}" if query else location)


def safe_next(raw: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if not raw or not raw.startswith(f"{PREFIX}/") or len(raw) > 2000:
        return f"{PREFIX}/"
    if "//" in raw or "\\" in raw or not raw.isprintable():
        return f"{PREFIX}/"
    return raw


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


def _signed_out_page(request: web.Request, state: session.State) -> web.StreamResponse:
    """Rule 1 for a request without a valid session."""
    stale = state in (session.State.EXPIRED, session.State.INVALID)
    if request.method == "GET":
        raise see_other(LOGIN, next=request.path_qs, notice="expired" if stale else "")
    return _login_page(request, 401, [EXPIRED if stale else "Sign in first."], f"{PREFIX}/")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sessions and CSRF (Rules 1, 2), and every error as a page (Rule 4)."""
    try:
        return await _guarded(request, handler)
    except web.HTTPException as exc:
        if exc.status in (404, 405):
            if request.path == PREFIX:
                raise web.HTTPSeeOther(f"{PREFIX}/") from None
            return _error(request, exc.status, "There is no such page in this console.")
        raise
    except NotFound:
        return _error(request, 404, "Not found: it may have been deleted.")
    except StoreUnavailable:
        return _error(request, 503, "The store cannot be reached; try again in a moment.")
    except StoreError as exc:  # the store refused what was asked (a page cursor edited by hand)
        return _error(request, 400, str(exc))
    except AdminError as exc:
        return _error(request, exc.status, str(exc))
    except Exception:
        log.exception("console %s failed", request.match_info.route.resource)
        return _error(request, 500, "Something went wrong; the process log says what.")


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    check_target(request.raw_path)  # an id in the path is looked up as typed (http.py Rule 3)
    c = console(request)
    found = session.read(request.cookies.get(session.COOKIE), c.context.token, c.context.clock())
    request[SESSION] = found
    if request.method == "POST":
        if request.content_type != "application/x-www-form-urlencoded":
            return _error(request, 400, "The console takes form posts only.")
        request[FORM] = await body_of(request)
    if request.path in OPEN:
        if request.method == "POST" and not _same_origin(request):
            return _error(request, 403, FORGED)
        return await handler(request)
    if found.state is not session.State.VALID:
        return _signed_out_page(request, found.state)
    if request.method == "POST" and not (
        _same_origin(request) and session.csrf_valid(field(request, "csrf"), c.context.token, found)
    ):
        return _error(request, 403, FORGED)
    return await handler(request)


def _error(request: web.Request, status: int, message: str) -> web.Response:
    return render(request, "error.html", status, title=f"Error {status}", message=message)


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(HEADERS)


# sign-in ---------------------------------------------------------------------------------------
def _login_page(request: web.Request, status: int, errors: list[str], after: str) -> web.Response:
    """The sign-in form, shown as signed out whatever the cookie (it signs in anew)."""
    return _html(
        request,
        "login.html",
        status,
        signed_in=False,
        csrf="",
        errors=errors,
        next=after,
        title="Sign in",
    )


async def login_form(request: web.Request) -> web.Response:
    return _login_page(request, 200, [], safe_next(request.query.get("next")))


async def login(request: web.Request) -> web.Response:
    c = console(request)
    after = safe_next(field(request, "next"))
    if not crypto.same(field(request, "token").strip(), c.context.token):
        return _login_page(request, 401, ["The admin token is not valid."], after)
    value = session.issue(c.context.token, c.context.clock(), c.lifetime)
    response = web.HTTPSeeOther(after)
    response.set_cookie(
        session.COOKIE,
        value,
        max_age=session.cookie_max_age(c.lifetime),
        path=f"{PREFIX}/",
        secure=c.secure,
        httponly=True,
        samesite="Strict",
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    c = console(request)
    response = see_other(LOGIN, notice="signed_out")
    response.del_cookie(
        session.COOKIE, path=f"{PREFIX}/", secure=c.secure, httponly=True, samesite="Strict"
    )
    raise response


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise NotFound()
    body = console(request).static[name]
    return web.Response(body=body, content_type=STATIC[name], charset="utf-8")


# pages -----------------------------------------------------------------------------------------
async def _metrics_text() -> str:
    return (await asyncio.to_thread(metrics.exposition, [])).decode()


async def overview(request: web.Request) -> web.Response:
    c = console(request)
    data = await pages.overview(c.context, c.sampler, await _metrics_text())
    return render(request, "overview.html", title="Overview", section="overview", o=data)


def _consumers_page(
    request: web.Request,
    listing: pages.ConsumerList,
    errors: list[str] | None = None,
    values: dict[str, str] | None = None,
) -> web.Response:
    """The list, and the creation form as typed with its problems (400) when given back."""
    return render(
        request,
        "consumers.html",
        400 if errors else 200,
        title="Consumers",
        section="consumers",
        listing=listing,
        form={"username": "", "custom_id": "", **(values or {})},
        errors=errors or [],
    )


async def consumers(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip()
    page = pages.page_number(request.query.get("page"))
    listing = await pages.consumer_list(console(request).context.store, q, page)
    return _consumers_page(request, listing)


async def create_consumer(request: web.Request) -> web.StreamResponse:
    c = console(request).context
    username, custom_id = field(request, "username"), field(request, "custom_id")
    try:
        made = await pages.create_consumer(c, username, custom_id)
    except AdminError as exc:
        listing = await pages.consumer_list(c.store, "", 1)
        errors = pages.messages(exc, pages.CONSUMER_LABELS)
        return _consumers_page(
            request, listing, errors, {"username": username, "custom_id": custom_id}
        )
    request[CREATED] = made.id
    raise see_other(f"{PREFIX}/consumers/{seg(made.id)}", notice="created")


def _consumer_view(
    request: web.Request,
    data: pages.ConsumerPage,
    errors: list[str] | None = None,
    values: dict[str, str] | None = None,
) -> web.Response:
    """The consumer, and the application form as typed with its problems (400) when given
    back; the form's client id is new each time it is drawn (pages.py Rule 5)."""
    return render(
        request,
        "consumer.html",
        400 if errors else 200,
        title=f"Consumer {pages.name_of(data.consumer)}",
        section="consumers",
        data=data,
        form={
            "name": "",
            "redirect_uris": "",
            **(values or {}),
            "client_id": crypto.new_client_id(),
        },
        errors=errors or [],
    )


async def consumer(request: web.Request) -> web.Response:
    data = await pages.consumer_page(console(request).context.store, request.match_info["c"])
    return _consumer_view(request, data)


async def confirm_delete_consumer(request: web.Request) -> web.Response:
    found = await pages.deletable_consumer(console(request).context.store, request.match_info["c"])
    return render(
        request,
        "confirm.html",
        title="Delete consumer",
        section="consumers",
        question=f"Delete consumer {pages.name_of(found)}?",
        detail="Its applications and their tokens are deleted with it.",
        action=f"{PREFIX}/consumers/{seg(found.id)}/delete",
        button="Delete",
        back=f"{PREFIX}/consumers/{seg(found.id)}",
        hidden={},
    )


async def delete_consumer(request: web.Request) -> web.StreamResponse:
    await pages.delete_consumer(console(request).context.store, request.match_info["c"])
    raise see_other(f"{PREFIX}/consumers", notice="consumer_deleted")


def _secret_page(
    request: web.Request, made: Credential, secret: str | None, heading: str
) -> web.Response:
    """The application with its new secret: the one page that shows a secret (once)."""
    return render(
        request,
        "secret.html",
        title=heading,
        section="consumers",
        app=made,
        secret=secret,
        back=f"{PREFIX}/consumers/{seg(made.consumer_id)}",
    )


async def create_application(request: web.Request) -> web.StreamResponse:
    c = console(request).context
    key = request.match_info["c"]
    name, uris = field(request, "name"), field(request, "redirect_uris")
    try:
        made, secret = await pages.create_application(
            c, key, name, uris, field(request, "client_id")
        )
    except (NotFound, pages.AlreadySent):
        raise
    except AdminError as exc:
        data = await pages.consumer_page(c.store, key)
        errors = pages.messages(exc, pages.APPLICATION_LABELS)
        return _consumer_view(request, data, errors, {"name": name, "redirect_uris": uris})
    request[CREATED] = made.id
    return _secret_page(request, made, secret, "Application created")


def _app_action(
    request: web.Request,
    consumer: Consumer,
    app: Credential,
    verb: str,
    question: str,
    detail: str,
    hidden: dict[str, str] | None = None,
) -> web.Response:
    base = f"{PREFIX}/consumers/{seg(consumer.id)}"
    return render(
        request,
        "confirm.html",
        title=question.rstrip("?"),
        section="consumers",
        question=question,
        detail=detail,
        action=f"{base}/oauth2/{seg(app.id)}/{verb}",
        button="Delete" if verb == "delete" else "Rotate secret",
        back=base,
        hidden=hidden or {},
    )


async def confirm_rotate(request: web.Request) -> web.Response:
    m = request.match_info
    c = console(request).context
    found_consumer, app = await pages.application(c.store, m["c"], m["cred"])
    mark = session.secret_mark(c.token, app.id, app.secret_hash)
    detail = (
        "A new secret replaces the current one at once: clients using it stop getting tokens,"
        " and the tokens issued to this application are revoked."
    )
    question = f"Rotate the secret of {app.name or app.client_id}?"
    return _app_action(
        request, found_consumer, app, "rotate", question, detail, {"secret_mark": mark}
    )


async def rotate(request: web.Request) -> web.StreamResponse:
    m = request.match_info
    mark = field(request, "secret_mark")
    made, secret = await pages.rotate_secret(console(request).context, m["c"], m["cred"], mark)
    return _secret_page(request, made, secret, "Secret rotated")


async def confirm_delete_application(request: web.Request) -> web.Response:
    m = request.match_info
    store = console(request).context.store
    found_consumer, app = await pages.deletable_application(store, m["c"], m["cred"])
    question = f"Delete application {app.name or app.client_id}?"
    detail = "Its tokens are deleted with it."
    return _app_action(request, found_consumer, app, "delete", question, detail)


async def delete_application(request: web.Request) -> web.StreamResponse:
    m = request.match_info
    found = await pages.delete_application(console(request).context.store, m["c"], m["cred"])
    raise see_other(f"{PREFIX}/consumers/{seg(found.consumer_id)}", notice="application_deleted")


def _edit_page(
    request: web.Request,
    consumer: Consumer,
    app: Credential,
    uris: str,
    errors: list[str] | None = None,
) -> web.Response:
    return render(
        request,
        "edit.html",
        400 if errors else 200,
        title=f"Redirect URIs of {app.name or app.client_id}",
        section="consumers",
        consumer=consumer,
        app=app,
        uris=uris,
        errors=errors or [],
    )


async def edit_form(request: web.Request) -> web.Response:
    m = request.match_info
    found_consumer, app = await pages.application(console(request).context.store, m["c"], m["cred"])
    return _edit_page(request, found_consumer, app, "\n".join(app.redirect_uris))


async def edit(request: web.Request) -> web.StreamResponse:
    m = request.match_info
    c = console(request).context
    uris = field(request, "redirect_uris")
    try:
        made = await pages.set_redirect_uris(c, m["c"], m["cred"], uris)
    except NotFound:
        raise
    except AdminError as exc:
        found_consumer, app = await pages.application(c.store, m["c"], m["cred"])
        errors = pages.messages(exc, pages.APPLICATION_LABELS)
        return _edit_page(request, found_consumer, app, uris, errors)
    raise see_other(f"{PREFIX}/consumers/{seg(made.consumer_id)}", notice="saved")


def _query(values: Mapping[str, str]) -> pages.TokenQuery:
    return pages.TokenQuery(
        consumer=values.get("consumer", "").strip(),
        application=values.get("application", "").strip(),
        user=values.get("user", "").strip(),
    )


def _form_query(request: web.Request) -> pages.TokenQuery:
    return _query({name: field(request, name) for name in ("consumer", "application", "user")})


async def tokens(request: web.Request) -> web.Response:
    query = _query(request.query)
    after = request.query.get("after") or None
    listing = await pages.token_list(console(request).context, query, after)
    next_url = ""
    if listing.next is not None:
        next_url = f"{PREFIX}/tokens?" + urlencode({**query.params(), "after": listing.next})
    count = request.query.get("count", "")
    done = f"{count} tokens revoked." if count.isascii() and count.isdigit() else ""
    return render(
        request,
        "tokens.html",
        title="Tokens",
        section="tokens",
        query=query,
        listing=listing,
        next_url=next_url,
        done=done,
    )


async def revoke(request: web.Request) -> web.StreamResponse:
    await pages.revoke_token(console(request).context, request.match_info["t"])
    raise see_other(f"{PREFIX}/tokens", **_form_query(request).params(), notice="revoked")


async def confirm_revoke_all(request: web.Request) -> web.Response:
    query = _query(request.query)
    count = await pages.bulk_count(console(request).context, query)
    return render(
        request,
        "confirm.html",
        title="Revoke tokens",
        section="tokens",
        question=f"Revoke {count} tokens?",
        detail="Every live token matching the search is revoked at once, on every worker.",
        action=f"{PREFIX}/tokens/revoke",
        button=f"Revoke {count} tokens",
        back=f"{PREFIX}/tokens?" + urlencode(query.params()),
        hidden=query.params(),
    )


async def revoke_all(request: web.Request) -> web.StreamResponse:
    query = _form_query(request)
    revoked = await pages.revoke_all(console(request).context, query)
    raise see_other(f"{PREFIX}/tokens", **query.params(), count=str(revoked))


async def config(request: web.Request) -> web.Response:
    data = pages.config_page(console(request).context, await _metrics_text())
    return render(request, "config.html", title="Configuration", section="config", data=data)


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/", overview),
    ("GET", "/login", login_form),
    ("POST", "/login", login),
    ("POST", "/logout", logout),
    ("GET", "/static/{name}", static),
    ("GET", "/consumers", consumers),
    ("POST", "/consumers", create_consumer),
    ("GET", "/consumers/{c}", consumer),
    ("GET", "/consumers/{c}/delete", confirm_delete_consumer),
    ("POST", "/consumers/{c}/delete", delete_consumer),
    ("POST", "/consumers/{c}/oauth2", create_application),
    ("GET", "/consumers/{c}/oauth2/{cred}/rotate", confirm_rotate),
    ("POST", "/consumers/{c}/oauth2/{cred}/rotate", rotate),
    ("GET", "/consumers/{c}/oauth2/{cred}/edit", edit_form),
    ("POST", "/consumers/{c}/oauth2/{cred}/edit", edit),
    ("GET", "/consumers/{c}/oauth2/{cred}/delete", confirm_delete_application),
    ("POST", "/consumers/{c}/oauth2/{cred}/delete", delete_application),
    ("GET", "/tokens", tokens),
    ("GET", "/tokens/revoke", confirm_revoke_all),
    ("POST", "/tokens/revoke", revoke_all),
    ("POST", "/tokens/{t}/revoke", revoke),
    ("GET", "/config", config),
)


def build_console(context: AdminContext) -> web.Application:
    """The console, to be mounted at PREFIX by the admin app."""
    admin = context.settings.admin
    files = resources.files("edgeauth.admin.ui") / "static"
    app = web.Application(middlewares=[guard])
    app[CONSOLE] = Console(
        context=context,
        templates=_environment(),
        sampler=pages.Sampler(context.started),
        static={name: (files / name).read_bytes() for name in STATIC},
        secure=admin.tls_cert_file is not None and admin.tls_key_file is not None,
        lifetime=admin.ui_session_seconds,
    )
    app.on_response_prepare.append(_headers)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app
