"""`python -m server`: run the control plane (gRPC), or an admin task."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from server import logs
from server.app import ControlPlane
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="The ESP32 fleet control plane: gRPC API (with health and reflection). "
        "Configured by environment variables; see README.md, 'Configuration'.",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the gRPC server (the default)")
    sub.add_parser("check-config", help="validate the configuration from the environment and exit")
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
