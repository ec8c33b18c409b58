"""Command line: `edgeauth serve | check-config | gen-cert | demo | version`, the admin
clients `consumers | apps | tokens`, and `import kong`.

The only module that reads argv, prints for humans and calls sys.exit. Exit codes: 0 ok,
2 usage, 78 configuration (EX_CONFIG), 69 unavailable (EX_UNAVAILABLE).
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from edgeauth import __version__, tls
from edgeauth.config import Settings, load_settings
from edgeauth.config.checks import (
    anonymous_notes,
    exposure_warnings,
    inert_keys,
    unwritable_paths,
)
from edgeauth.errors import ConfigError
from edgeauth.logs import setup_logging

EX_CONFIG = 78
EX_UNAVAILABLE = 69

log = logging.getLogger("edgeauth")


def _default_config() -> str:
    return os.environ.get("EDGEAUTH_CONFIG", "config.toml")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeauth", description="OAuth 2.0 edge gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the gateway (supervisor and workers)"),
        ("check-config", "validate the configuration and print ok or every problem"),
        ("demo", "run the gateway with the sample backend and print curl commands to try"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("-c", "--config", default=_default_config(), help="config.toml path")
    cert = sub.add_parser("gen-cert", help="write a development CA and certificate for localhost")
    cert.add_argument("--dir", default="certs", help="directory to write into (default: certs)")
    cert.add_argument("--force", action="store_true", help="overwrite an existing certificate")
    sub.add_parser("version", help="print the version")
    _admin_parsers(sub)
    _import_parsers(sub)
    worker = sub.add_parser("_worker")  # started by `serve`, not by people
    worker.add_argument("-c", "--config", required=True)
    worker.add_argument("--tls-fds", default="")
    worker.add_argument("--plain-fds", default="")
    worker.add_argument("--admin-fds", default="")
    worker.add_argument("--ready-fd", type=int, default=None)
    worker.add_argument("--bus-fd", type=int, default=None)
    return parser


def _admin_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`consumers`, `apps`, `tokens`: clients of the admin API (edgeauth.admin_client)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", default=_default_config(), help="config.toml path")
    common.add_argument("--admin-url", help="admin API URL (default: from [admin] listen)")
    common.add_argument("--admin-token", help="admin token (default: from admin.token_file)")
    common.add_argument("--json", action="store_true", help="print the API's JSON")

    def group(name: str, text: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        cmd = sub.add_parser(name, help=text, description=text)
        return cmd.add_subparsers(dest="action", required=True, metavar="ACTION")

    consumers = group("consumers", "list, add or remove consumers (admin API)")
    cmd = consumers.add_parser("list", parents=[common], help="list consumers")
    cmd.add_argument("--tags", metavar="T", help="only with these tags: a,b (all) or a/b (any)")
    cmd = consumers.add_parser("add", parents=[common], help="create a consumer")
    cmd.add_argument("username")
    cmd.add_argument("--custom-id", metavar="X")
    cmd.add_argument("--tag", dest="tags", action="append", metavar="T", help="repeatable")
    cmd = consumers.add_parser(
        "rm", parents=[common], help="delete a consumer, its applications and tokens"
    )
    cmd.add_argument("consumer", metavar="USERNAME_OR_ID")

    apps = group("apps", "list, add or remove OAuth applications (admin API)")
    cmd = apps.add_parser("list", parents=[common], help="list applications")
    cmd.add_argument("--consumer", metavar="C", help="only this consumer's (username or id)")
    cmd = apps.add_parser(
        "add", parents=[common], help="create an application; prints its secret once"
    )
    cmd.add_argument("consumer", metavar="CONSUMER", help="username or id")
    cmd.add_argument("--name", required=True)
    cmd.add_argument("--client-id", metavar="ID", help="default: generated")
    kind = cmd.add_mutually_exclusive_group()
    kind.add_argument("--client-secret", metavar="S", help="default: generated")
    kind.add_argument("--public", action="store_true", help="a public client (no secret)")
    cmd.add_argument(
        "--redirect-uri", dest="redirect_uris", action="append", metavar="URI", help="repeatable"
    )
    cmd = apps.add_parser("rm", parents=[common], help="delete an application and its tokens")
    cmd.add_argument("app", metavar="CLIENT_ID_OR_ID")

    tokens = group("tokens", "list or revoke access tokens (admin API)")
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


def _import_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`import kong`: consumers, applications and tokens from Kong (edgeauth.kong)."""
    from edgeauth.kong.command import add_arguments

    text = "import from another gateway"
    sources = sub.add_parser("import", help=text, description=text)
    which = sources.add_subparsers(dest="source", required=True, metavar="SOURCE")
    text = "consumers, applications and tokens from Kong; services as [[services]] TOML"
    add_arguments(which.add_parser("kong", help=text, description=text), _default_config())


def _fds(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def load_or_exit(path: str) -> Settings:
    """Load the configuration, or print every problem and exit 78."""
    try:
        return load_settings(Path(path))
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{problem}\n")
        sys.exit(EX_CONFIG)


def _check_tls(settings: Settings) -> None:
    """Refuse to start with a certificate or key that does not load (exit 78)."""
    server = settings.server
    try:
        tls.server_context(server.tls_cert_file, server.tls_key_file, server.tls_min_version)
    except (OSError, ssl.SSLError) as exc:
        sys.stderr.write(
            f"{settings.source.name}: server.tls_cert_file / server.tls_key_file: "
            f"cannot load the certificate and key: {exc}\n"
        )
        sys.exit(EX_CONFIG)


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = load_or_exit(args.config)
    _check_tls(settings)
    problems = unwritable_paths(settings)
    for problem in problems:
        sys.stderr.write(f"{problem}\n")
    if problems:
        return EX_CONFIG
    for warning in [*exposure_warnings(settings), *inert_keys(settings)]:
        sys.stderr.write(f"warning: {warning}\n")
    for note in anonymous_notes(settings):
        sys.stderr.write(f"note: {note}\n")
    sys.stdout.write("ok\n")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from edgeauth.supervisor import Supervisor

    settings = load_or_exit(args.config)
    _check_tls(settings)
    setup_logging(settings.log.level)
    return Supervisor(settings, Path(args.config).resolve()).run()


def cmd_gen_cert(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if (directory / "edgeauth.crt").exists() and not args.force:
        sys.stderr.write(f"{directory / 'edgeauth.crt'} exists; use --force to replace it\n")
        return 1
    paths = tls.generate_dev_certificate(directory)
    sys.stdout.write(
        f"wrote {paths.cert_file} and {paths.key_file} (0600), signed by {paths.ca_file}\n"
        f"trust it with: curl --cacert {paths.ca_file} https://127.0.0.1:8443/...\n"
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from edgeauth.worker import run_worker

    settings = load_or_exit(args.config)
    return run_worker(
        settings,
        _fds(args.tls_fds),
        _fds(args.plain_fds),
        _fds(args.admin_fds),
        args.ready_fd,
        args.bus_fd,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from edgeauth.demo import run_demo

    settings = load_or_exit(args.config)
    _check_tls(settings)
    return run_demo(settings, Path(args.config))


def cmd_admin(args: argparse.Namespace) -> int:
    from edgeauth.admin_client import run

    overridden = args.admin_url is not None and args.admin_token is not None
    settings = None if overridden else load_or_exit(args.config)
    return run(args, settings, sys.stdout, sys.stderr)


def cmd_import(args: argparse.Namespace) -> int:
    from edgeauth.kong.command import run

    return run(args, load_or_exit(args.config), sys.stdout, sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    commands = {
        "serve": cmd_serve,
        "check-config": cmd_check_config,
        "gen-cert": cmd_gen_cert,
        "demo": cmd_demo,
        "_worker": cmd_worker,
        "consumers": cmd_admin,
        "apps": cmd_admin,
        "tokens": cmd_admin,
        "import": cmd_import,
    }
    if args.command == "version":
        sys.stdout.write(f"edgeauth {__version__}\n")
        sys.exit(0)
    sys.exit(commands[args.command](args))
