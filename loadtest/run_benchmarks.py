"""`make bench`: run every benchmark under loadtest/, one after another, each in its own process.

Each benchmark prints its own ratio against a baseline measured in the same run (these machines
are noisy, so absolute figures from different runs are not comparable); see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

BENCHMARKS = ("loadtest.bench_store", "loadtest.bench_mqtt_ingest", "loadtest.bench_device_ingest")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.run_benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"only these, of: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    failed = []
    for name in args.names or BENCHMARKS:
        print(f"\n=== {name}", flush=True)
        if subprocess.run([sys.executable, "-m", name], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
