"""Resume to the first new chunk: how long `resume=true` keeps a user waiting.

    python benchmarks/resume_speed.py [--algo qmix] [--env smax_3m] [--steps 20000] [--runs 2]
                                      [--out benchmarks/results/resume_speed.json]

Trains `--steps` env steps once (its final checkpoint holds the part-filled replay buffer),
then resumes copies of that run with total_steps raised by one env step (so the resumed
process restores, compiles, runs one new chunk, evaluates and saves), `--runs` times
in each of two states, alternated:
  warm  the run's own compile cache, as a user re-running the command has it (XLA's
        compiled chunk and the saved trace, jlmarl.core.traced)
  cold  compile_cache=false: nothing cached
Reports each resumed process's wall time (start to exit) and the chunk compile time it
prints, with the load average. Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["progress=false", "plot=false"]


def train(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "jlmarl.train", *args, *QUIET], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=3600)  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"jlmarl.train {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return result, time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algo", default="qmix")
    parser.add_argument("--env", default="smax_3m")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "resume_speed.json")
    args = parser.parse_args()
    rows = {"warm": [], "cold": []}
    with tempfile.TemporaryDirectory() as tmp:
        base, cache = Path(tmp) / "base", Path(tmp) / "cache"
        first, first_s = train([f"algo={args.algo}", f"env={args.env}", f"total_steps={args.steps}",
                                f"run_dir={base}", f"compile_cache={cache}"])  # fmt: skip
        print(f"first run: {first_s:.1f} s")
        for i in range(args.runs):
            for state in ("warm", "cold"):
                run_dir = Path(tmp) / f"{state}_{i}"
                shutil.copytree(base, run_dir)
                load = os.getloadavg()[0]
                cached = f"compile_cache={cache}" if state == "warm" else "compile_cache=false"
                result, wall = train(
                    ["resume=true", f"run_dir={run_dir}", f"total_steps={args.steps + 1}", cached]
                )
                found = re.search(r"chunk compiled in ([0-9.]+)s", result.stdout)
                row = {
                    "wall_s": round(wall, 2),
                    "compile_s": float(found.group(1)) if found else None,
                    "saved_trace": "(saved trace)" in result.stdout,
                    "load_average": load,
                }
                rows[state].append(row)
                print(
                    f"{state:>5} resume: {row['wall_s']:.1f} s (chunk compile {row['compile_s']} s), "
                    f"load {load:.1f}"
                )
    median = {s: statistics.median(r["wall_s"] for r in rows[s]) for s in rows}
    out = {
        "command": f"python benchmarks/resume_speed.py --algo {args.algo} --env {args.env} "
        f"--steps {args.steps} --runs {args.runs}",
        "machine": f"{os.uname().machine}, {os.cpu_count()} cores",
        "first_run_s": round(first_s, 1),
        "rows": rows,
        "median_wall_s": median,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"median resume wall: warm {median['warm']:.1f} s, cold {median['cold']:.1f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
