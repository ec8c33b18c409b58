"""Command line: `edgeauth serve | check-config | gen-cert | demo | version`.

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
    worker = sub.add_parser("_worker")  # started by `serve`, not by people
    worker.add_argument("-c", "--config", required=True)
    worker.add_argument("--tls-fds", default="")
    worker.add_argument("--plain-fds", default="")
    worker.add_argument("--admin-fds", default="")
    worker.add_argument("--ready-fd", type=int, default=None)
    worker.add_argument("--bus-fd", type=int, default=None)
    return parser


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


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    commands = {
        "serve": cmd_serve,
        "check-config": cmd_check_config,
        "gen-cert": cmd_gen_cert,
        "demo": cmd_demo,
        "_worker": cmd_worker,
    }
    if args.command == "version":
        sys.stdout.write(f"edgeauth {__version__}\n")
        sys.exit(0)
    sys.exit(commands[args.command](args))
