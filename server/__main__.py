"""`python -m server`: run the control plane (gRPC), or an admin task."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import signal
import sys

from server import logs
from server.app import ControlPlane, create_admin
from server.core.errors import DomainError
from server.settings import Settings, SettingsError

log = logging.getLogger("server")


async def serve(settings: Settings) -> None:
    plane = ControlPlane(settings)
    await plane.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down", extra={"grace_seconds": settings.shutdown_grace_seconds})
    await plane.stop()


def read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("admin password: ")
    return sys.stdin.readline().rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="The ESP32 fleet control plane: gRPC API (with health and reflection). "
        "Configured by environment variables; see README.md, 'Configuration'.",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the gRPC server (the default)")
    sub.add_parser("check-config", help="validate the configuration from the environment and exit")
    admin = sub.add_parser(
        "create-admin",
        help="create an admin account, or promote an existing one (idempotent)",
        description="Create an admin in the configured store (MONGO_URI, or SQLite under DATA_DIR), or promote "
        "and unblock the account with that email. The password is read from ADMIN_PASSWORD, else from a prompt "
        "(or one line of standard input when it is not a terminal); an existing account keeps its password.",
    )
    admin.add_argument("--email", required=True)
    admin.add_argument("--username", default="admin")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    if args.command == "check-config":
        print("configuration ok")
        return 0
    if args.command == "create-admin":
        password = settings.admin_password or read_password()
        try:
            user_id = asyncio.run(create_admin(settings, args.email, password, args.username))
        except DomainError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
        print(f"admin ready: {args.email} (user id {user_id})")
        return 0
    if settings.jwt_secret_generated:
        log.warning("JWT_SECRET is unset: using a random per-process secret; tokens die with this process")
    try:
        asyncio.run(serve(settings))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
