"""`python -m simulator`: run a simulated ESP32 fleet with injected faults against a control plane."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from firmware_tools.signing import SigningError, load_public_key
from simulator.api import ApiError
from simulator.faults import FaultConfig
from simulator.fleet import DEFAULT_STATE_FILE, Fleet, FleetConfig, FleetError
from simulator.report import Report


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    p = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Run a simulated ESP32 fleet (MQTT heartbeats, LED commands, OTA with rollback) "
        "with injected faults against a running control plane, then print a report.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--api", default=env.get("SIMULATOR_API", "http://127.0.0.1:3000"), help="REST base URL (Envoy)")
    p.add_argument("--email", default=env.get("SIMULATOR_EMAIL"), help="account email (env SIMULATOR_EMAIL)")
    p.add_argument("--password", default=env.get("SIMULATOR_PASSWORD"), help="account password (SIMULATOR_PASSWORD)")
    p.add_argument("--username", help="username for --register-user (default: the email's local part)")
    p.add_argument("--register-user", action="store_true", help="create the account first (409 is fine)")
    p.add_argument("--register", action="store_true", help="register devices the control plane does not know")
    p.add_argument("--devices", type=int, default=10, help="fleet size")
    p.add_argument("--prefix", default="SIM", help="device ids are PREFIX-0001, PREFIX-0002, ...")
    p.add_argument("--duration", type=float, default=60.0, help="seconds to run (0: until Ctrl-C)")
    p.add_argument("--heartbeat", type=float, default=5.0, help="seconds between heartbeats")
    p.add_argument("--firmware", default="1.0.0", help="the version every device starts with")
    p.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE, help="where issued passwords are kept")
    p.add_argument("--concurrency", type=int, default=20, help="at most this many devices connecting at once")
    p.add_argument("--ramp", type=float, help="spread first connects over this many seconds (default min(hb, 5))")
    p.add_argument("--mqtt-host", help="override the broker host the registration returned")
    p.add_argument("--mqtt-port", type=int, help="override the broker port the registration returned")
    p.add_argument("--public-key", type=Path, help="Ed25519 public key PEM: OTA images must be signed by it")
    p.add_argument("--outage", type=float, default=3.0, help="seconds a device stays away after an unclean drop")
    p.add_argument("--seed", type=int, help="seed the fault dice: the same seed injects the same faults")
    p.add_argument("--progress", type=float, default=5.0, help="seconds between progress lines on stderr")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="log each device's connects and OTA steps")
    FaultConfig.add_arguments(p)
    return p


def config_from_args(args: argparse.Namespace) -> FleetConfig:
    if args.devices < 1 or args.heartbeat <= 0 or args.duration < 0:
        raise ValueError("--devices must be >= 1, --heartbeat > 0 and --duration >= 0")
    public_key = None
    if args.public_key is not None:
        public_key = load_public_key(args.public_key.read_bytes(), f"public key {args.public_key}")
    return FleetConfig(
        api=args.api,
        email=args.email,
        password=args.password,
        username=args.username,
        register_user=args.register_user,
        register=args.register,
        devices=args.devices,
        prefix=args.prefix,
        heartbeat=args.heartbeat,
        firmware=args.firmware,
        state_file=args.state_file,
        faults=FaultConfig.from_args(args),
        seed=args.seed,
        concurrency=args.concurrency,
        ramp=args.ramp,
        mqtt_host=args.mqtt_host,
        mqtt_port=args.mqtt_port,
        public_key=public_key,
        outage=args.outage,
    )


def say(message: str) -> None:
    print(f"[simulator] {message}", file=sys.stderr, flush=True)


async def run(config: FleetConfig, duration: float | None, progress: float) -> Report:
    fleet = Fleet(config, say=say)
    await fleet.start()
    say(f"{len(fleet.devices)} devices starting against {config.api}; Ctrl-C ends the run")
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    # Not available off the main thread or on Windows: Ctrl-C then ends the run via KeyboardInterrupt.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, stop_requested.set)
        loop.add_signal_handler(signal.SIGTERM, stop_requested.set)
    runner = asyncio.create_task(fleet.run(duration, progress))
    stopper = asyncio.create_task(stop_requested.wait())
    await asyncio.wait([runner, stopper], return_when=asyncio.FIRST_COMPLETED)
    if not runner.done():
        say("stopping")
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        report = await fleet.stop()
        # fleet.run stopped itself in its finally; the report of the cancelled run is this one.
    else:
        report = runner.result()
    stopper.cancel()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    try:
        config = config_from_args(args)
    except (ValueError, OSError, SigningError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(run(config, args.duration or None, args.progress))
    except (FleetError, ApiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ever_connected == report.devices else 1


if __name__ == "__main__":
    sys.exit(main())
