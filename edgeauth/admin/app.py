"""The admin aiohttp application: the route table of design §6, at `/` and `/default`, and
the console at `/ui/` when `[admin] ui = true` (admin/ui/)."""

from __future__ import annotations

from aiohttp import web

from edgeauth.admin import consumers, credentials, declared, status, tokens
from edgeauth.admin.http import CONTEXT, MAX_BODY, AdminContext, Handler, guard
from edgeauth.admin.trail import audit_trail
from edgeauth.admin.ui.app import PREFIX, build_console

# What config.toml declares: readable here, written only through the file (declared.py).
DECLARED: tuple[tuple[str, Handler], ...] = (
    ("/services", declared.list_services),
    ("/services/{s}", declared.get_service),
    ("/services/{s}/routes", declared.service_routes),
    ("/services/{s}/plugins", declared.service_plugins),
    ("/routes", declared.list_routes),
    ("/routes/{r}", declared.get_route),
    ("/plugins", declared.list_plugins),
    ("/plugins/{p}", declared.get_plugin),
)
WRITES = ("POST", "PUT", "PATCH", "DELETE")

TABLE: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/consumers", consumers.list_consumers),
    ("POST", "/consumers", consumers.create_consumer),
    ("GET", "/consumers/{c}", consumers.get_consumer),
    ("PATCH", "/consumers/{c}", consumers.patch_consumer),
    ("PUT", "/consumers/{c}", consumers.put_consumer),
    ("DELETE", "/consumers/{c}", consumers.delete_consumer),
    ("GET", "/consumers/{c}/oauth2", credentials.list_for_consumer),
    ("POST", "/consumers/{c}/oauth2", credentials.create),
    ("GET", "/consumers/{c}/oauth2/{cred}", credentials.get),
    ("PATCH", "/consumers/{c}/oauth2/{cred}", credentials.patch),
    ("PUT", "/consumers/{c}/oauth2/{cred}", credentials.put),
    ("DELETE", "/consumers/{c}/oauth2/{cred}", credentials.delete),
    ("GET", "/oauth2", credentials.list_all),
    ("GET", "/oauth2/{cred}", credentials.get),
    ("PATCH", "/oauth2/{cred}", credentials.patch),
    ("DELETE", "/oauth2/{cred}", credentials.delete),
    ("GET", "/oauth2_tokens", tokens.list_tokens),
    ("POST", "/oauth2_tokens", tokens.create),
    ("DELETE", "/oauth2_tokens", tokens.revoke_many),
    ("GET", "/oauth2_tokens/{t}", tokens.get),
    ("PATCH", "/oauth2_tokens/{t}", tokens.patch),
    ("PUT", "/oauth2_tokens/{t}", tokens.put),
    ("DELETE", "/oauth2_tokens/{t}", tokens.delete),
    *(("GET", path, handler) for path, handler in DECLARED),
    *((method, path, declared.read_only) for path, _ in DECLARED for method in WRITES),
    ("GET", "/", declared.root),
    ("POST", "/config", declared.post_config),
    ("GET", "/status", status.status),
    ("GET", "/status/ready", status.ready),
    ("GET", "/metrics", status.metrics),
)


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "edgeauth"


async def _open_audit(app: web.Application) -> None:
    app[CONTEXT].audit.open()


async def _close_audit(app: web.Application) -> None:
    app[CONTEXT].audit.close()


def build_admin_app(context: AdminContext) -> web.Application:
    """The audit trail wraps the guard, so it sees refused authentications and every status
    (the console's included); the audit log is open while the app runs."""
    app = web.Application(middlewares=[audit_trail, guard], client_max_size=MAX_BODY)
    app.on_response_prepare.append(_server_header)
    app.on_startup.append(_open_audit)
    app.on_cleanup.append(_close_audit)
    app[CONTEXT] = context
    for prefix in ("", "/{ws:default}"):
        for method, path, handler in TABLE:
            app.router.add_route(method, prefix + path, handler)
    if context.settings.admin.ui:
        app.add_subapp(PREFIX, build_console(context))
    return app
