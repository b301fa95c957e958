"""Whole-process wall time of a default training command, cold, in two checkouts, alternated.

    python benchmarks/whole_run.py --old /path/to/old_checkout [--runs 2]
                                   [--commands "algo=limarl env=matrix_three_state" ...] [--out FILE]

What a user waits for: `python -m jlmarl.train <command> num_seeds=1` from process start
to exit, with no persistent compilation cache (compile_cache=false in every checkout
that has the key), each command's own defaults otherwise (matrix_three_state: 50k
env steps). Old and new run in turn, `--runs` pairs, so a pair shares the machine's load;
the chunk compile time the run prints is recorded beside the wall time. Writes JSON
(command, commits, load averages, every figure, medians, new/old per pair).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ab

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["algo=limarl env=matrix_three_state", "algo=qmix env=matrix_three_state"]
QUIET = ["num_seeds=1", "plot=false", "progress=false"]


def one(checkout: Path, args: list[str], run_dir: Path) -> dict:
    # checkouts from before the persistent cache have no key to turn it off
    has_cache = "compile_cache:" in (checkout / "configs" / "config.yaml").read_text()
    extra = ["compile_cache=false"] if has_cache else []
    env = ab.child_env()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "jlmarl.train", *args, *QUIET, *extra, f"run_dir={run_dir}"],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    found = re.search(r"chunk compiled in ([0-9.]+)s", result.stdout)
    return {
        "exit": result.returncode,
        "wall_s": round(wall, 1),
        "compile_s": float(found.group(1)) if found else None,
        "load_average": load,
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--commands", nargs="+", default=COMMANDS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "whole_run.json")
    args = parser.parse_args()
    rows = []
    print(f"{'command':<40} {'old wall':>9} {'new wall':>9} {'old comp':>9} {'new comp':>9} {'new/old':>8}")
    with tempfile.TemporaryDirectory(prefix="jlmarl-whole-") as tmp:
        for text in args.commands:
            pairs = []
            for i in range(args.runs):
                old = one(args.old, text.split(), Path(tmp) / f"old{i}_{len(rows)}")
                new = one(ROOT, text.split(), Path(tmp) / f"new{i}_{len(rows)}")
                pairs.append({"old": old, "new": new, "new_over_old": new["wall_s"] / old["wall_s"]})
            med = {
                side: {k: statistics.median(p[side][k] for p in pairs) for k in ("wall_s", "compile_s")}
                for side in ("old", "new")
            }
            rows.append({"command": text, "pairs": pairs, "median": med})
            print(
                f"{text:<40} {med['old']['wall_s']:>8.1f}s {med['new']['wall_s']:>8.1f}s "
                f"{med['old']['compile_s']:>8.1f}s {med['new']['compile_s']:>8.1f}s "
                f"{med['new']['wall_s'] / med['old']['wall_s']:>7.0%}",
                flush=True,
            )
    ab.write(args.out, {**ab.header("whole_run.py", args.old, ROOT), "rows": rows})


if __name__ == "__main__":
    main()
