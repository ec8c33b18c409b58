"""`edgeauth consumers | apps | tokens`: the admin API over HTTP(S), for people and scripts.

Rule 1: stdlib only (urllib.request). Proxies from the environment are ignored and redirects
are not followed, so the admin token only ever goes to the admin URL.
Rule 2: every failure is ONE line on the error stream and an exit status: 1 the API refused
the request (4xx, 500) or a deletion was not confirmed, 69 the API cannot be reached (or
answers 502/503/504), 78 the configuration cannot say where the API is or what its token is,
2 a bad --admin-url or secret file. With `--json` that line is `{"error": ...}` plus the API's
status and answer when it gave one.
Rule 3: aligned plain-text tables for people; `--json` prints the API's JSON; every list
follows `next` to the last page.
Rule 4: a secret (a client secret, the admin token) is read from a file or stdin, never argv
(the old --client-secret and --admin-token still work, with a warning); a generated secret is
printed once, a secret the operator supplied is never echoed.
Writes only to the streams it is given; argv and sys.exit stay in cli.py.
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO
from urllib.parse import quote, urlencode, urljoin, urlsplit

from edgeauth import __version__, crypto
from edgeauth.config import Settings
from edgeauth.exitcodes import EX_CONFIG, EX_REFUSED, EX_UNAVAILABLE, EX_USAGE
from edgeauth.jsonout import document, error_line, json_line

TIMEOUT_SECONDS = 30.0  # a bulk revoke of many tokens is one durable write
LOOKUP_PAGE_SIZE = 1000  # internal look-ups (consumer names) fetch few, large pages
UNAVAILABLE_STATUSES = (502, 503, 504)

Json = dict[str, Any]


class Failure(Exception):
    """One line for the error stream, and the exit status that goes with it."""

    def __init__(self, code: int, message: str, detail: Json | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail or {}  # what the API answered, for --json


@dataclass(frozen=True, slots=True)
class Streams:
    out: TextIO
    err: TextIO
    stdin: TextIO
    json: bool  # --json: warnings and errors as JSON objects too

    def warn(self, text: str) -> None:
        self.err.write(
            json_line({"warning": text}) if self.json else f"edgeauth: warning: {text}\n"
        )

    def ask(self, question: str) -> bool:
        """y or yes on stdin; anything else, end of input included, is no."""
        self.err.write(question)
        self.err.flush()
        return self.stdin.readline().strip().lower() in ("y", "yes")


# ---- where the admin API is, and how to authenticate --------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    url: str  # base URL without a trailing slash, e.g. http://127.0.0.1:8001
    token: str
    ssl_context: ssl.SSLContext | None
    token_source: str  # the option or the token file it came from, for error messages


def _loopback(host: str) -> str:
    """A wildcard listen address is reached on loopback; IPv6 hosts get brackets."""
    if host in ("", "0.0.0.0"):  # noqa: S104 (we connect to it, we do not bind it)
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def url_from_settings(settings: Settings) -> str:
    """`[admin] listen` → the URL this host reaches it at (https when admin TLS is set)."""
    admin = settings.admin
    if admin.listen.port == 0:
        raise Failure(
            EX_CONFIG,
            f"{settings.source.name}: admin.listen: port 0 (any free port) cannot be reached "
            "from the configuration; pass --admin-url",
        )
    scheme = "https" if admin.tls_cert_file is not None else "http"
    return f"{scheme}://{_loopback(admin.listen.host)}:{admin.listen.port}"


def _checked_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Failure(EX_USAGE, f"--admin-url: expected http://host:port or https://..., not {url}")
    return url.rstrip("/")


def _token_from_file(settings: Settings) -> str:
    path = settings.admin.token_file
    hint = "has the gateway been started? or pass --admin-token-file"
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise Failure(EX_CONFIG, f"admin.token_file: {path} does not exist ({hint})") from None
    except OSError as exc:
        raise Failure(
            EX_CONFIG,
            f"admin.token_file: cannot read {path}: {exc.strerror or exc} "
            "(run as the gateway's user, or pass --admin-token-file)",
        ) from None
    if not token:
        raise Failure(EX_CONFIG, f"admin.token_file: {path} is empty ({hint})")
    return token


def _ssl_context(url: str, settings: Settings | None, derived: bool) -> ssl.SSLContext | None:
    """None for http. For the URL derived from the config: trust exactly the admin listener's
    configured certificate (pinned, so a wildcard listen reached on loopback still verifies).
    For an --admin-url: the system's CAs, plus that certificate when the config names one."""
    if urlsplit(url).scheme != "https":
        return None
    cert: Path | None = settings.admin.tls_cert_file if settings is not None else None
    try:
        if derived and cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.load_verify_locations(cafile=str(cert))
        else:
            context = ssl.create_default_context()
            if cert is not None:
                context.load_verify_locations(cafile=str(cert))
    except (OSError, ssl.SSLError) as exc:
        raise Failure(
            EX_CONFIG, f"admin.tls_cert_file: cannot load {cert} as a trust anchor: {exc}"
        ) from None
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def target_of(args: argparse.Namespace, settings: Settings | None, io: Streams) -> Target:
    """`--admin-url` / `--admin-token-file` win; the rest comes from the configuration."""
    given_url: str | None = args.admin_url
    if given_url is not None:
        url = _checked_url(given_url)
    elif settings is not None:
        url = url_from_settings(settings)
    else:  # cli.py loads the configuration unless both overrides are given
        raise Failure(EX_CONFIG, "no configuration: pass -c/--config or --admin-url")
    given = _given_token(args, io)
    if given is not None:
        token, source = given
    elif settings is not None:
        token, source = (
            _token_from_file(settings),
            f"admin.token_file ({settings.admin.token_file})",
        )
    else:
        raise Failure(EX_CONFIG, "no configuration: pass -c/--config or --admin-token-file")
    return Target(url, token, _ssl_context(url, settings, given_url is None), source)


def _given_token(args: argparse.Namespace, io: Streams) -> tuple[str, str] | None:
    """The token and where it came from: --admin-token-file, or the old --admin-token, which
    warns (Rule 4); None when neither is given."""
    path: str | None = args.admin_token_file
    if args.admin_token is not None:
        io.warn(
            "--admin-token puts the admin token on the command line, where other users of "
            "this host can read it (ps, /proc); use --admin-token-file PATH or - for stdin"
        )
        token, source = str(args.admin_token), "--admin-token"
    elif path is not None:
        if path == "-" and getattr(args, "client_secret_file", None) == "-":
            raise Failure(
                EX_USAGE, "--admin-token-file and --client-secret-file cannot both read stdin"
            )
        token = read_secret(path, io.stdin, "--admin-token-file")
        source = f"--admin-token-file ({'stdin' if path == '-' else path})"
    else:
        return None
    if not token.strip():
        raise Failure(EX_USAGE, f"{source}: empty")
    return token.strip(), source


# ---- HTTP -------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the error it is: the token is not carried elsewhere."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> None:
        return None


def _message(body: Any) -> str:
    if isinstance(body, Mapping):
        for key in ("message", "error_description", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return ""


def _conflict(body: Any) -> str:
    """Kong's 409 body → `username "alice" is already taken`."""
    fields = body.get("fields") if isinstance(body, Mapping) else None
    if isinstance(fields, Mapping) and fields:
        clashes = ", ".join(f'{name} "{value}"' for name, value in fields.items())
        return f"conflict: {clashes} already exists"
    return f"conflict: {_message(body) or 'already exists'}"


class Client:
    """The admin API: JSON in, JSON out, Kong's errors turned into one-line Failures."""

    def __init__(self, target: Target) -> None:
        self.target = target
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.ProxyHandler({}),
            _NoRedirect(),
        ]
        if target.ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=target.ssl_context))
        self._opener = urllib.request.build_opener(*handlers)

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        missing: str | None = None,
    ) -> Any:
        """The parsed JSON answer (None for 204). `missing` is the message for a 404."""
        url = path if path.startswith(("http://", "https://")) else self.target.url + path
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query)
        headers = {
            "Authorization": f"Bearer {self.target.token}",
            "Accept": "application/json",
            "User-Agent": f"edgeauth-cli/{__version__}",
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        # S310: the base URL is http(s) (checked in target_of) and `next` stays on its origin
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with self._opener.open(request, timeout=TIMEOUT_SECONDS) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
            exc.close()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise Failure(
                EX_UNAVAILABLE, f"cannot reach the admin API at {self.target.url}: {_why(exc)}"
            ) from None
        parsed = self._parse(status, raw)
        if status >= 400:
            self._refuse(status, parsed, missing)
        return parsed

    def _parse(self, status: int, raw: bytes) -> Any:
        if status == 204 or not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise Failure(
                EX_REFUSED,
                f"unexpected answer from {self.target.url} (HTTP {status}, not JSON): "
                "is this the admin listener?",
            ) from None

    def _refuse(self, status: int, body: Any, missing: str | None) -> NoReturn:
        text = _message(body)
        detail: Json = {"status": status, "response": body}
        if status == 401:
            message = (
                f"the admin API refused the admin token from {self.target.token_source} "
                f"(401 {text or 'Unauthorized'})"
            )
        elif status == 404 and missing is not None:
            message = missing
        elif status == 409:
            message = _conflict(body)
        elif status == 400:
            message = f"rejected: {text or 'bad request'}"
        elif status in UNAVAILABLE_STATUSES:
            raise Failure(
                EX_UNAVAILABLE, f"admin API unavailable ({status} {text})".rstrip(), detail
            )
        else:
            message = f"admin API error {status}{': ' + text if text else ''}"
        raise Failure(EX_REFUSED, message, detail)

    def list_all(
        self, path: str, query: Mapping[str, str] | None = None, *, missing: str | None = None
    ) -> list[Json]:
        """Every item of a list, following `next` until it is null."""
        items: list[Json] = []
        page = self.call("GET", path, query=query, missing=missing)
        while True:
            if not isinstance(page, Mapping) or not isinstance(page.get("data"), list):
                raise Failure(EX_REFUSED, f"unexpected answer from {self.target.url}{path}")
            items.extend(page["data"])
            following = page.get("next")
            if not following:
                return items
            page = self.call("GET", self._same_origin(str(following)), missing=missing)

    def _same_origin(self, link: str) -> str:
        """`next` is a path from the server's root; it may not lead anywhere else."""
        url = urljoin(self.target.url + "/", link)
        if urlsplit(url)[:2] != urlsplit(self.target.url)[:2]:
            raise Failure(EX_REFUSED, f"unexpected next link from {self.target.url}: {link}")
        return url


def _why(exc: BaseException) -> str:
    reason: Any = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {reason.verify_message}"
    if isinstance(reason, OSError) and reason.strerror:
        return str(reason.strerror)
    if isinstance(reason, TimeoutError):
        return f"no answer within {TIMEOUT_SECONDS:g} s"
    if isinstance(reason, http.client.BadStatusLine):
        return "no HTTP answer (an https listener reached over http?)"
    return str(reason) or type(reason).__name__


def _q(value: str) -> str:
    return quote(value, safe="")


# ---- output -----------------------------------------------------------------------------

_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), *range(127, 160))}


def cell(value: Any) -> str:
    """One table cell: '-' for nothing, lists joined, control characters escaped."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(cell(v) for v in value)
    return str(value).translate(_CONTROL)


def when(timestamp: Any) -> str:
    if not isinstance(timestamp, int | float) or isinstance(timestamp, bool):
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned on the widest cell, two spaces apart, no trailing blanks."""
    widths = [max(len(r[i]) for r in (headers, *rows)) for i in range(len(headers))]
    lines = []
    for row in (headers, *rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def fields(pairs: Sequence[tuple[str, Any]], indent: str = "  ") -> str:
    width = max(len(name) for name, _ in pairs)
    return "".join(f"{indent}{name.ljust(width)}  {cell(value)}\n" for name, value in pairs)


def _ref(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


# ---- consumers --------------------------------------------------------------------------


def _consumer_name(c: Mapping[str, Any]) -> str:
    return cell(c.get("username") or c.get("custom_id") or c.get("id"))


def _consumer(client: Client, key: str) -> Json:
    found: Json = client.call("GET", f"/consumers/{_q(key)}", missing=f"consumer not found: {key}")
    return found


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def consumers_list(client: Client, args: argparse.Namespace, io: Streams) -> int:
    query = {"tags": args.tags} if args.tags else None
    items = client.list_all("/consumers", query)
    if args.json:
        io.out.write(document({"data": items, "next": None}))
        return 0
    rows = [
        [
            cell(c.get("id")),
            cell(c.get("username")),
            cell(c.get("custom_id")),
            cell(c.get("tags")),
            when(c.get("created_at")),
        ]
        for c in items
    ]
    io.out.write(table(["ID", "USERNAME", "CUSTOM_ID", "TAGS", "CREATED"], rows))
    return 0


def consumers_show(client: Client, args: argparse.Namespace, io: Streams) -> int:
    found = _consumer(client, args.consumer)
    if args.json:
        io.out.write(document(found))
        return 0
    apps = client.list_all(f"/consumers/{_q(found['id'])}/oauth2")
    io.out.write(f"consumer {_consumer_name(found)}\n")
    io.out.write(
        fields(
            [
                ("id", found.get("id")),
                ("username", found.get("username")),
                ("custom_id", found.get("custom_id")),
                ("tags", found.get("tags")),
                ("created", when(found.get("created_at"))),
                ("applications", len(apps)),
            ]
        )
    )
    if apps:
        rows = [
            [cell(a.get("name")), cell(a.get("client_id")), cell(a.get("client_type"))]
            for a in apps
        ]
        io.out.write("\n" + table(["NAME", "CLIENT_ID", "TYPE"], rows))
    return 0


def consumers_add(client: Client, args: argparse.Namespace, io: Streams) -> int:
    body: Json = {"username": args.username}
    if args.custom_id is not None:
        body["custom_id"] = args.custom_id
    if args.tags:
        body["tags"] = list(args.tags)
    made = client.call("POST", "/consumers", body=body)
    if args.json:
        io.out.write(document(made))
        return 0
    io.out.write(f"created consumer {cell(made.get('username'))}\n")
    io.out.write(
        fields(
            [
                ("id", made.get("id")),
                ("custom_id", made.get("custom_id")),
                ("tags", made.get("tags")),
            ]
        )
    )
    return 0


def _confirmed(client: Client, found: Json, io: Streams) -> bool:
    """On a terminal, the operator says y; scripts (stdin not a terminal) are not asked."""
    if not io.stdin.isatty():
        return True
    apps = client.list_all(f"/consumers/{_q(found['id'])}/oauth2")
    return io.ask(
        f"delete consumer {_consumer_name(found)}, its {_plural(len(apps), 'application')} "
        "and their tokens? [y/N] "
    )


def consumers_rm(client: Client, args: argparse.Namespace, io: Streams) -> int:
    found = _consumer(client, args.consumer)
    if not args.yes and not _confirmed(client, found, io):
        raise Failure(EX_REFUSED, f"not confirmed: consumer {_consumer_name(found)} kept")
    client.call("DELETE", f"/consumers/{_q(found['id'])}")
    if args.json:
        io.out.write(document(found))
        return 0
    io.out.write(
        f"deleted consumer {_consumer_name(found)} ({found['id']}) "
        "with its applications and tokens\n"
    )
    return 0


# ---- apps (OAuth 2.0 credentials) -------------------------------------------------------


def _consumer_names(client: Client) -> dict[str, str]:
    everyone = client.list_all("/consumers", {"size": str(LOOKUP_PAGE_SIZE)})
    return {str(c.get("id")): _consumer_name(c) for c in everyone}


def _app(client: Client, key: str) -> Json:
    found: Json = client.call("GET", f"/oauth2/{_q(key)}", missing=f"application not found: {key}")
    return found


def apps_list(client: Client, args: argparse.Namespace, io: Streams) -> int:
    owner: str | None = args.consumer
    if owner is not None:
        path = f"/consumers/{_q(owner)}/oauth2"
        items = client.list_all(path, missing=f"consumer not found: {owner}")
    else:
        items = client.list_all("/oauth2")
    if args.json:
        io.out.write(document({"data": items, "next": None}))
        return 0
    names = _consumer_names(client) if items else {}
    rows = []
    for a in items:
        consumer_id = str(_ref(a.get("consumer"), "id"))
        rows.append(
            [
                cell(a.get("id")),
                names.get(consumer_id, cell(consumer_id)),
                cell(a.get("name")),
                cell(a.get("client_id")),
                cell(a.get("client_type")),
                cell(a.get("redirect_uris")),
            ]
        )
    io.out.write(table(["ID", "CONSUMER", "NAME", "CLIENT_ID", "TYPE", "REDIRECT_URIS"], rows))
    return 0


def apps_show(client: Client, args: argparse.Namespace, io: Streams) -> int:
    found = _app(client, args.app)
    if args.json:
        io.out.write(document(found))
        return 0
    owner_id = str(_ref(found.get("consumer"), "id"))
    owner = client.call(
        "GET", f"/consumers/{_q(owner_id)}", missing=f"consumer not found: {owner_id}"
    )
    io.out.write(f"application {cell(found.get('name'))}\n")
    io.out.write(
        fields(
            [
                ("id", found.get("id")),
                ("client_id", found.get("client_id")),
                ("consumer", f"{_consumer_name(owner)} ({owner_id})"),
                ("client_type", found.get("client_type")),
                ("redirect_uris", found.get("redirect_uris")),
                ("tags", found.get("tags")),
                ("created", when(found.get("created_at"))),
            ]
        )
    )
    return 0


def read_secret(path: str, stdin: TextIO, option: str = "--client-secret-file") -> str:
    """The file's text (stdin for `-`) less one trailing line end; `option` names the
    option it was given with in an error."""
    where = "stdin" if path == "-" else path
    try:
        text = stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise Failure(EX_USAGE, f"{option}: {where} is not UTF-8 text") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise Failure(EX_USAGE, f"{option}: cannot read {where}: {reason}") from None
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise Failure(EX_USAGE, f"{option}: {where} is empty")
    return secret


def _supplied_secret(args: argparse.Namespace, io: Streams) -> str | None:
    if getattr(args, "client_secret", None) is not None:
        io.warn(
            "--client-secret puts the secret on the command line, where other users of this "
            "host can read it (ps, /proc); use --client-secret-file PATH or - for stdin"
        )
        return str(args.client_secret)
    if args.client_secret_file is not None:
        return read_secret(args.client_secret_file, io.stdin)
    return None


def _show_app(made: Json, supplied: bool, headline: str, io: Streams, json_out: bool) -> None:
    """The application as the API answered, its clear secret shown only if generated."""
    if supplied:
        made.pop("client_secret", None)
    if json_out:
        io.out.write(document(made))
        return
    pairs: list[tuple[str, Any]] = [("id", made.get("id")), ("client_id", made.get("client_id"))]
    secret = made.get("client_secret")
    if secret is not None:
        pairs.append(("client_secret", secret))
    pairs += [
        ("client_type", made.get("client_type")),
        ("redirect_uris", made.get("redirect_uris")),
    ]
    io.out.write(headline)
    io.out.write(fields(pairs))
    if secret is not None:
        io.out.write("store the client secret now: it is not shown again\n")


def apps_add(client: Client, args: argparse.Namespace, io: Streams) -> int:
    owner: str = args.consumer
    body: Json = {"name": args.name}
    if args.client_id is not None:
        body["client_id"] = args.client_id
    secret = _supplied_secret(args, io)
    if secret is not None:
        body["client_secret"] = secret
    if args.redirect_uris:
        body["redirect_uris"] = list(args.redirect_uris)
    if args.public:
        body["client_type"] = "public"
    made = client.call(
        "POST", f"/consumers/{_q(owner)}/oauth2", body=body, missing=f"consumer not found: {owner}"
    )
    headline = f"created application {cell(made.get('name'))} for consumer {cell(owner)}\n"
    _show_app(made, secret is not None, headline, io, args.json)
    return 0


def apps_rotate_secret(client: Client, args: argparse.Namespace, io: Streams) -> int:
    """PATCH the application's client_secret: the store revokes the application's tokens
    with the old secret, so a leaked secret takes what was minted with it along."""
    found = _app(client, args.app)
    name = cell(found.get("client_id"))
    if found.get("client_type") == "public":
        raise Failure(EX_REFUSED, f"application {name} is a public client: it has no secret")
    supplied = _supplied_secret(args, io)
    secret = supplied if supplied is not None else crypto.mint()
    updated = client.call(
        "PATCH",
        f"/oauth2/{_q(found['id'])}",
        body={"client_secret": secret},
        missing=f"application not found: {args.app}",
    )
    headline = f"new secret for application {cell(found.get('name'))} (client_id {name})\n"
    _show_app(updated, supplied is not None, headline, io, args.json)
    if not args.json:
        io.out.write("the old secret no longer works; the application's tokens were revoked\n")
    return 0


def apps_rm(client: Client, args: argparse.Namespace, io: Streams) -> int:
    found = _app(client, args.app)
    client.call("DELETE", f"/oauth2/{_q(found['id'])}")
    if args.json:
        io.out.write(document(found))
        return 0
    io.out.write(
        f"deleted application {cell(found.get('name'))} "
        f"(client_id {cell(found.get('client_id'))}) and its tokens\n"
    )
    return 0


# ---- tokens -----------------------------------------------------------------------------


def _token_filters(client: Client, args: argparse.Namespace) -> dict[str, str]:
    """The API's filters; a named app, consumer or service must exist (a typo is an error,
    not an empty list or "revoked 0")."""
    query: dict[str, str] = {}
    if args.user is not None:
        query["authenticated_userid"] = args.user
    if args.app is not None:
        client.call("GET", f"/oauth2/{_q(args.app)}", missing=f"application not found: {args.app}")
        query["credential"] = args.app
    if args.consumer is not None:
        key = args.consumer
        client.call("GET", f"/consumers/{_q(key)}", missing=f"consumer not found: {key}")
        query["consumer"] = key
    service: str | None = getattr(args, "service", None)
    if service is not None:
        known = {str(s.get("name")) for s in client.list_all("/services")}
        if service not in known:
            raise Failure(EX_REFUSED, f"service not found: {service}")
        query["service"] = service
    if getattr(args, "active", False):
        query["active"] = "true"
    return query


def _status(t: Mapping[str, Any]) -> str:
    if t.get("revoked"):
        return "revoked"
    return "active" if t.get("active") else "expired"


def tokens_list(client: Client, args: argparse.Namespace, io: Streams) -> int:
    items = client.list_all("/oauth2_tokens", _token_filters(client, args))
    if args.json:
        io.out.write(document({"data": items, "next": None}))
        return 0
    rows = []
    for t in items:
        expires = "never" if t.get("expires_at") is None else when(t.get("expires_at"))
        rows.append(
            [
                cell(t.get("id")),
                cell(t.get("access_token_prefix")) + "...",
                cell(_ref(t.get("consumer"), "username")),
                cell(_ref(t.get("credential"), "client_id")),
                cell(t.get("authenticated_userid")),
                cell(_ref(t.get("service"), "name")),
                cell(t.get("scope")),
                expires,
                _status(t),
            ]
        )
    headers = ["ID", "TOKEN", "CONSUMER", "APP", "USER", "SERVICE", "SCOPE", "EXPIRES", "STATUS"]
    io.out.write(table(headers, rows))
    return 0


def tokens_revoke(client: Client, args: argparse.Namespace, io: Streams) -> int:
    key: str | None = args.token
    if key is None:
        revoked = client.call("DELETE", "/oauth2_tokens", query=_token_filters(client, args))
        if args.json:
            io.out.write(document(revoked))
            return 0
        count = int(revoked.get("revoked", 0)) if isinstance(revoked, Mapping) else 0
        io.out.write(f"revoked {count} token{'' if count == 1 else 's'}\n")
        return 0
    missing = "token not found (give its id or its full value)"
    found = client.call("GET", f"/oauth2_tokens/{_q(key)}", missing=missing)
    already = bool(found.get("revoked"))
    client.call("DELETE", f"/oauth2_tokens/{_q(found['id'])}")
    if args.json:
        io.out.write(
            document(client.call("GET", f"/oauth2_tokens/{_q(found['id'])}", missing=missing))
        )
        return 0
    what = f"token {cell(found.get('access_token_prefix'))}... ({found['id']})"
    io.out.write(f"{what} was already revoked\n" if already else f"revoked {what}\n")
    return 0


# ---- entry ------------------------------------------------------------------------------

Command = Callable[[Client, argparse.Namespace, Streams], int]
COMMANDS: dict[tuple[str, str], Command] = {
    ("consumers", "list"): consumers_list,
    ("consumers", "show"): consumers_show,
    ("consumers", "add"): consumers_add,
    ("consumers", "rm"): consumers_rm,
    ("apps", "list"): apps_list,
    ("apps", "show"): apps_show,
    ("apps", "add"): apps_add,
    ("apps", "rotate-secret"): apps_rotate_secret,
    ("apps", "rm"): apps_rm,
    ("tokens", "list"): tokens_list,
    ("tokens", "revoke"): tokens_revoke,
}


def run(
    args: argparse.Namespace, settings: Settings | None, out: TextIO, err: TextIO, stdin: TextIO
) -> int:
    """Runs `edgeauth <command> <action>`; returns the exit status."""
    io = Streams(out, err, stdin, bool(args.json))
    try:
        client = Client(target_of(args, settings, io))
        return COMMANDS[(args.command, args.action)](client, args, io)
    except Failure as exc:
        if io.json:
            err.write(error_line(exc.message, **exc.detail))
        else:
            err.write(f"edgeauth: {exc.message.translate(_CONTROL)}\n")
        return exc.code
