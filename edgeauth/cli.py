"""Command line: `edgeauth serve | check-config | gen-cert | demo | version | completion`, the
admin clients `consumers | apps | tokens`, and `import kong`.

The only module that reads argv, prints for humans and calls sys.exit. Exit codes: 0 ok, or
one of edgeauth/exitcodes.py (1 refused, 2 usage, 69 unavailable, 78 configuration).
Rule 1: a command that reads a configuration takes `-c PATH`; without it the first of
$EDGEAUTH_CONFIG (when set), ./config.toml, /etc/edgeauth/config.toml (when present) is used.
Rule 2: with `--json` every failure, usage errors included, is one JSON object
`{"error": ...}` on stderr with the same exit status as without it; stdout stays empty.
`check-config --json` is the exception: its one document on stdout carries the problems.
Rule 3: `_worker` (started by `serve`) parses like any command but is never listed.
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeAlias

from edgeauth import __version__, tls
from edgeauth.config import Settings, load_settings
from edgeauth.config.checks import (
    anonymous_notes,
    exposure_warnings,
    inert_keys,
    unwritable_paths,
)
from edgeauth.errors import ConfigError
from edgeauth.exitcodes import EX_CONFIG, EX_REFUSED, EX_USAGE
from edgeauth.jsonout import document, error_line
from edgeauth.logs import setup_logging

CONFIG_ENV = "EDGEAUTH_CONFIG"
SEARCHED = (Path("config.toml"), Path("/etc/edgeauth/config.toml"))
HIDDEN = frozenset({"_worker"})
CONFIG_HELP = (
    "configuration file (default: $EDGEAUTH_CONFIG if set, else ./config.toml, else "
    "/etc/edgeauth/config.toml)"
)
EPILOG = f"""\
configuration: every command that reads one takes -c PATH; without it edgeauth uses
${CONFIG_ENV} when it is set, else ./config.toml, else /etc/edgeauth/config.toml.
--json: the answer as JSON on stdout; a failure as {{"error": "..."}} on stderr, same exit status.
exit status: 0 ok, 1 refused by the admin API, 2 usage, 69 unavailable, 78 configuration."""

log = logging.getLogger("edgeauth")


class UsageError(Exception):
    """argparse's complaint, raised instead of printed so that --json can format it."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """Raises UsageError, and never names a hidden command in "invalid choice"."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if isinstance(action, argparse._SubParsersAction) and value not in (choices or ()):
            shown = ", ".join(repr(name) for name in (choices or ()) if name not in HIDDEN)
            raise argparse.ArgumentError(action, f"invalid choice: {value!r} (choose from {shown})")
        super()._check_value(action, value)


Subparsers: TypeAlias = "argparse._SubParsersAction[_Parser]"


def _add_config(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("-c", "--config", metavar="PATH", help=CONFIG_HELP)


def _parser() -> _Parser:
    parser = _Parser(
        prog="edgeauth",
        description="OAuth 2.0 edge gateway",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgeauth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cmd = sub.add_parser("serve", help="run the gateway (supervisor and workers)")
    _add_config(cmd)
    cmd = sub.add_parser(
        "check-config", help="validate the configuration and print ok or every problem"
    )
    _add_config(cmd)
    cmd.add_argument(
        "--json", action="store_true", help='print {"ok", "problems", "warnings", "notes"}'
    )
    text = "run the gateway with the sample backend and print curl commands to try"
    _add_config(sub.add_parser("demo", help=text))
    cert = sub.add_parser("gen-cert", help="write a development CA and certificate for localhost")
    cert.add_argument("--dir", default="certs", metavar="DIR", help="where (default: certs)")
    cert.add_argument("--force", action="store_true", help="overwrite an existing certificate")
    sub.add_parser("version", help="print the version")
    _admin_parsers(sub)
    _import_parsers(sub)
    shell = sub.add_parser("completion", help="print a shell completion script")
    shell.add_argument("shell", choices=("bash", "zsh"))
    _worker_parser(sub)
    return parser


def _worker_parser(sub: Subparsers) -> None:
    """Started by `serve`, not by people: no help, so argparse lists it nowhere."""
    worker = sub.add_parser("_worker")
    worker.add_argument("-c", "--config", required=True)
    worker.add_argument("--tls-fds", default="")
    worker.add_argument("--plain-fds", default="")
    worker.add_argument("--admin-fds", default="")
    worker.add_argument("--stream-fds", default="")
    worker.add_argument("--ready-fd", type=int, default=None)
    worker.add_argument("--bus-fd", type=int, default=None)


def _admin_parsers(sub: Subparsers) -> None:
    """`consumers`, `apps`, `tokens`: clients of the admin API (edgeauth.admin_client)."""
    common = _Parser(add_help=False)
    _add_config(common)
    common.add_argument("--admin-url", help="admin API URL (default: from [admin] listen)")
    token = common.add_mutually_exclusive_group()
    token.add_argument(
        "--admin-token-file",
        metavar="PATH",
        help="read the admin token from this file, - for stdin (default: admin.token_file)",
    )
    token.add_argument(
        "--admin-token", metavar="T", help="deprecated: visible to other users; use the file"
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON")

    def group(name: str, text: str) -> Subparsers:
        cmd = sub.add_parser(name, help=text, description=text)
        return cmd.add_subparsers(dest="action", required=True, metavar="ACTION")

    consumers = group("consumers", "list, show, add or remove consumers (admin API)")
    cmd = consumers.add_parser("list", parents=[common], help="list consumers")
    cmd.add_argument("--tags", metavar="T", help="only with these tags: a,b (all) or a/b (any)")
    cmd = consumers.add_parser("show", parents=[common], help="one consumer and its applications")
    cmd.add_argument("consumer", metavar="USERNAME_OR_ID")
    cmd = consumers.add_parser("add", parents=[common], help="create a consumer")
    cmd.add_argument("username")
    cmd.add_argument("--custom-id", metavar="X")
    cmd.add_argument("--tag", dest="tags", action="append", metavar="T", help="repeatable")
    cmd = consumers.add_parser(
        "rm", parents=[common], help="delete a consumer, its applications and tokens"
    )
    cmd.add_argument("consumer", metavar="USERNAME_OR_ID")
    cmd.add_argument("--yes", action="store_true", help="do not ask on a terminal")
    _apps_parsers(group("apps", "list, show, add, remove OAuth applications (admin API)"), common)
    _tokens_parsers(group("tokens", "list or revoke access tokens (admin API)"), common)


def _secret_file(cmd: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    cmd.add_argument(
        "--client-secret-file",
        metavar="PATH",
        help="read the secret from this file, - for stdin (one trailing newline dropped; "
        "default: generated)",
    )


def _apps_parsers(apps: Subparsers, common: _Parser) -> None:
    cmd = apps.add_parser("list", parents=[common], help="list applications")
    cmd.add_argument("--consumer", metavar="C", help="only this consumer's (username or id)")
    cmd = apps.add_parser("show", parents=[common], help="one application (never its secret)")
    cmd.add_argument("app", metavar="CLIENT_ID_OR_ID")
    cmd = apps.add_parser(
        "add", parents=[common], help="create an application; prints a generated secret once"
    )
    cmd.add_argument("consumer", metavar="CONSUMER", help="username or id")
    cmd.add_argument("--name", required=True)
    cmd.add_argument("--client-id", metavar="ID", help="default: generated")
    kind = cmd.add_mutually_exclusive_group()
    _secret_file(kind)
    kind.add_argument(
        "--client-secret", metavar="S", help="deprecated: visible to other users; use the file"
    )
    kind.add_argument("--public", action="store_true", help="a public client (no secret)")
    cmd.add_argument(
        "--redirect-uri", dest="redirect_uris", action="append", metavar="URI", help="repeatable"
    )
    cmd = apps.add_parser(
        "rotate-secret",
        parents=[common],
        help="new secret (generated unless given, printed once); revokes the app's tokens",
    )
    cmd.add_argument("app", metavar="CLIENT_ID_OR_ID")
    _secret_file(cmd)
    cmd = apps.add_parser("rm", parents=[common], help="delete an application and its tokens")
    cmd.add_argument("app", metavar="CLIENT_ID_OR_ID")


def _tokens_parsers(tokens: Subparsers, common: _Parser) -> None:
    cmd = tokens.add_parser("list", parents=[common], help="list tokens")
    cmd.add_argument("--user", metavar="U", help="authenticated_userid")
    cmd.add_argument("--app", metavar="CLIENT_ID", help="application client_id or id")
    cmd.add_argument("--consumer", metavar="C", help="consumer username or id")
    cmd.add_argument("--service", metavar="S", help="service name")
    cmd.add_argument("--active", action="store_true", help="only tokens still usable")
    cmd = tokens.add_parser("revoke", parents=[common], help="revoke one token or all that match")
    which = cmd.add_mutually_exclusive_group(required=True)
    which.add_argument("token", nargs="?", metavar="ID_OR_TOKEN", help="a token's id or value")
    which.add_argument("--user", metavar="U", help="every token of this authenticated_userid")
    which.add_argument("--app", metavar="CLIENT_ID", help="every token of this application")
    which.add_argument("--consumer", metavar="C", help="every token of this consumer")


def _import_parsers(sub: Subparsers) -> None:
    """`import kong`: consumers, applications and tokens from Kong (edgeauth.kong)."""
    from edgeauth.kong.command import add_arguments

    text = "import from another gateway"
    sources = sub.add_parser("import", help=text, description=text)
    which = sources.add_subparsers(dest="source", required=True, metavar="SOURCE")
    text = "consumers, applications and tokens from Kong; services as [[services]] TOML"
    add_arguments(which.add_parser("kong", help=text, description=text), CONFIG_HELP)


def _fds(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


# ---- configuration ------------------------------------------------------------------------


def find_config(given: str | None, environ: Mapping[str, str]) -> Path:
    """-c, else $EDGEAUTH_CONFIG, else the first of SEARCHED that exists (Rule 1)."""
    if given:
        return Path(given)
    named = environ.get(CONFIG_ENV)
    if named:
        return Path(named)
    for candidate in SEARCHED:
        if candidate.exists():
            return candidate
    raise ConfigError(
        [
            f"no configuration file: ${CONFIG_ENV} is not set and neither "
            + " nor ".join(str(p.absolute()) for p in SEARCHED)
            + " exists; pass -c PATH"
        ]
    )


def fail(as_json: bool, code: int, message: str, **detail: Any) -> NoReturn:
    """A failure on stderr (Rule 2), then exit with `code`."""
    if as_json:
        sys.stderr.write(error_line(message, **detail))
    else:
        sys.stderr.write(f"{message}\n")
    sys.exit(code)


def _config_failure(args: argparse.Namespace, problems: Sequence[str]) -> NoReturn:
    if getattr(args, "json", False):
        first = problems[0] if len(problems) == 1 else f"{len(problems)} configuration problems"
        fail(True, EX_CONFIG, first, problems=list(problems))
    fail(False, EX_CONFIG, "\n".join(problems))


def load_or_exit(args: argparse.Namespace) -> Settings:
    """Find and load the configuration (args.config becomes the path used), or report every
    problem and exit 78."""
    try:
        path = find_config(args.config, os.environ)
        args.config = str(path)
        return load_settings(path)
    except ConfigError as exc:
        _config_failure(args, exc.problems)


def _tls_problem(settings: Settings) -> str | None:
    """Why the certificate or key does not load, or None."""
    server = settings.server
    try:
        tls.server_context(server.tls_cert_file, server.tls_key_file, server.tls_min_version)
    except (OSError, ssl.SSLError) as exc:
        return (
            f"{settings.source.name}: server.tls_cert_file / server.tls_key_file: "
            f"cannot load the certificate and key: {exc}"
        )
    return None


def _tls_problems(settings: Settings) -> list[str]:
    """The server's certificate and key, then each stream's certificates: what does not load."""
    from edgeauth.stream.server import context_problems  # the stream runtime, only when asked

    problem = _tls_problem(settings)
    return [*([problem] if problem else []), *context_problems(settings)]


def _check_tls(args: argparse.Namespace, settings: Settings) -> None:
    """Refuse to start with a certificate or key that does not load (exit 78)."""
    problems = _tls_problems(settings)
    if problems:
        _config_failure(args, problems)


# ---- commands -----------------------------------------------------------------------------


def _check_report(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"ok": False, "problems": [], "warnings": [], "notes": []}
    try:
        path = find_config(args.config, os.environ)
        report["config"] = str(path.absolute())
        settings = load_settings(path)
    except ConfigError as exc:
        report["problems"] = list(exc.problems)
        return report
    report["problems"] = [*_tls_problems(settings), *unwritable_paths(settings)]
    report["warnings"] = [*exposure_warnings(settings), *inert_keys(settings)]
    report["notes"] = anonymous_notes(settings)
    report["ok"] = not report["problems"]
    return report


def cmd_check_config(args: argparse.Namespace) -> int:
    report = _check_report(args)
    if args.json:
        sys.stdout.write(document(report))
    else:
        for problem in report["problems"]:
            sys.stderr.write(f"{problem}\n")
        for warning in report["warnings"]:
            sys.stderr.write(f"warning: {warning}\n")
        for note in report["notes"]:
            sys.stderr.write(f"note: {note}\n")
        if report["ok"]:
            sys.stdout.write("ok\n")
    return 0 if report["ok"] else EX_CONFIG


def cmd_serve(args: argparse.Namespace) -> int:
    from edgeauth.supervisor import Supervisor

    settings = load_or_exit(args)
    _check_tls(args, settings)
    setup_logging(settings.log.level)
    return Supervisor(settings, Path(args.config).resolve()).run()


def cmd_gen_cert(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if (directory / "edgeauth.crt").exists() and not args.force:
        sys.stderr.write(f"{directory / 'edgeauth.crt'} exists; use --force to replace it\n")
        return EX_REFUSED
    paths = tls.generate_dev_certificate(directory)
    sys.stdout.write(
        f"wrote {paths.cert_file} and {paths.key_file} (0600), signed by {paths.ca_file}\n"
        f"trust it with: curl --cacert {paths.ca_file} https://127.0.0.1:8443/...\n"
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from edgeauth.worker import run_worker

    settings = load_or_exit(args)
    return run_worker(
        settings,
        _fds(args.tls_fds),
        _fds(args.plain_fds),
        _fds(args.admin_fds),
        args.ready_fd,
        args.bus_fd,
        stream_fds=_fds(args.stream_fds),
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from edgeauth.demo import run_demo

    settings = load_or_exit(args)
    _check_tls(args, settings)
    return run_demo(settings, Path(args.config))


def cmd_admin(args: argparse.Namespace) -> int:
    from edgeauth.admin_client import run

    given_token = args.admin_token is not None or args.admin_token_file is not None
    overridden = args.admin_url is not None and given_token
    settings = None if overridden else load_or_exit(args)
    return run(args, settings, sys.stdout, sys.stderr, sys.stdin)


def cmd_import(args: argparse.Namespace) -> int:
    from edgeauth.kong.command import run

    return run(args, load_or_exit(args), sys.stdout, sys.stderr)


def cmd_version(args: argparse.Namespace) -> int:
    sys.stdout.write(f"edgeauth {__version__}\n")
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    from edgeauth.completion import script

    sys.stdout.write(script(_parser(), args.shell))
    return 0


COMMANDS = {
    "serve": cmd_serve,
    "check-config": cmd_check_config,
    "gen-cert": cmd_gen_cert,
    "demo": cmd_demo,
    "version": cmd_version,
    "completion": cmd_completion,
    "_worker": cmd_worker,
    "consumers": cmd_admin,
    "apps": cmd_admin,
    "tokens": cmd_admin,
    "import": cmd_import,
}


def _wants_json(argv: Sequence[str]) -> bool:
    """--json before any `--`: known before parsing, so a usage error can honour it."""
    options = argv[: list(argv).index("--")] if "--" in argv else argv
    return "--json" in options


def main(argv: Sequence[str] | None = None) -> None:
    words = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _parser().parse_args(words)
    except UsageError as exc:
        if _wants_json(words):
            fail(True, EX_USAGE, exc.message, usage=exc.parser.format_usage().strip())
        exc.parser.print_usage(sys.stderr)
        fail(False, EX_USAGE, f"{exc.parser.prog}: error: {exc.message}")
    sys.exit(COMMANDS[args.command](args))
