"""How fast the simulator runs: sessions per second for one full ``simulate()`` into a workspace.

    python benchmarks/simulate_speed.py                      # 1,000,000 sessions, default shop
    python benchmarks/simulate_speed.py --sessions 100000 --products 10000 --users 100000

Prints the simulation summary, then total seconds and sessions per second. The workspace is a
temporary directory (removed afterwards) unless ``--workspace`` names one (it must be new).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from shopsearch.simulate import SimulationConfig, simulate
from shopsearch.store.workspace import Workspace


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--domains", type=int, default=3)
    parser.add_argument("--products", type=int, default=SimulationConfig.products)
    parser.add_argument("--users", type=int, default=SimulationConfig.users)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workspace", type=Path, default=None, help="new directory to keep")
    args = parser.parse_args(argv)
    config = SimulationConfig(
        domains=args.domains,
        products=args.products,
        users=args.users,
        sessions=args.sessions,
        seed=args.seed,
    )
    root = args.workspace or Path(tempfile.mkdtemp(prefix="simulate-speed-")) / "ws"
    try:
        workspace = Workspace.create(root)
        started = time.perf_counter()

        def report(done: int, total: int) -> None:
            elapsed = time.perf_counter() - started
            print(f"  {done:,}/{total:,} sessions, {elapsed:.1f} s", file=sys.stderr, flush=True)

        summary = simulate(workspace, config, progress=report)
        seconds = time.perf_counter() - started
    finally:
        if args.workspace is None:
            shutil.rmtree(root.parent, ignore_errors=True)
    print(summary.describe())
    print(f"sessions: {args.sessions:,}  products: {args.products:,}  users: {args.users:,}")
    print(f"total seconds: {seconds:.1f}")
    print(f"sessions/s: {args.sessions / seconds:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
