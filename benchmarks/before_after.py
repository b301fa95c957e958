"""Short runs of every learner in two checkouts, compared metric by metric.

    python benchmarks/before_after.py --old /path/old_checkout --new . --out /tmp/ba
    python benchmarks/before_after.py --compare-only --out /tmp/ba   # runs already there

For a change meant to keep the numbers (a refactor), every learner whose parameter
tree and random keys are unchanged must give identical metrics (wall-clock fields
aside). Runs `python -m jlmarl.train` with the same short settings in each checkout
(each with its own code: the checkout is the working directory), then writes
<out>/summary.json and benchmarks/results/before_after.json: per algo, lines
compared and the largest relative difference of any metric.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

COMMON = ["num_envs=4", "batch_size=8", "buffer_size=64", "progress=false", "plot=false"]
MATRIX = ["env=matrix_three_state", "total_steps=800", "test_interval=400", "test_episodes=4"]
SMAX = ["env=smax_3m", "total_steps=3000", "test_interval=1500", "test_episodes=4"]
ORACLE = ["env=oracle", "total_steps=1600", "test_interval=800", "test_episodes=4"]
LIMARL = ["limarl.pretrain_episodes=16", "limarl.val_episodes=2", "limarl.monitor_episodes=2"]
LIMARL += ["limarl.online_window=2", "limarl.rep_updates=2", "total_steps=1200"]
RUNS = {
    "qmix": ["algo=qmix", *SMAX],
    "vdn": ["algo=vdn", *SMAX],
    "iql": ["algo=iql", *MATRIX],
    "limarl": ["algo=limarl", *MATRIX, *LIMARL],
    "lsf_sac": ["algo=lsf_sac", *MATRIX],
    "masac": ["algo=masac", *MATRIX],
    "rec_i2q": ["algo=rec_i2q", *ORACLE],
    "rec_hyst_iql": ["algo=rec_hyst_iql", *ORACLE],
}
WALL_CLOCK = {"wall_s", "env_steps_per_s"}


def run_all(checkout: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, args in RUNS.items():
        cmd = [sys.executable, "-m", "jlmarl.train", *args, *COMMON, f"run_dir={out / name}"]
        result = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True)
        print(f"{checkout} {name}: exit {result.returncode}", flush=True)


def compare(old: Path, new: Path) -> dict:
    rows = {}
    for name in RUNS:
        files = [d / name / "metrics" / "seed_0.jsonl" for d in (old, new)]
        if not all(f.is_file() for f in files):
            rows[name] = {"compared": False}
            continue
        a, b = ([json.loads(x) for x in f.read_text().splitlines()] for f in files)
        worst, key = 0.0, None
        for x, y in zip(a, b, strict=False):
            for k, v in x.items():
                if k in WALL_CLOCK or not isinstance(v, int | float) or not isinstance(y.get(k), int | float):
                    continue
                d = abs(v - y[k]) / max(abs(v), 1e-9)
                if d > worst:
                    worst, key = d, k
        rows[name] = {"compared": True, "lines": [len(a), len(b)], "max_rel_diff": worst, "worst_metric": key}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, help="the checkout before the change")
    parser.add_argument("--new", type=Path, default=Path("."), help="the checkout after it")
    parser.add_argument(
        "--out", type=Path, required=True, help="run folders go to <out>/before and <out>/after"
    )
    parser.add_argument("--compare-only", action="store_true")
    args = parser.parse_args()
    if not args.compare_only:
        run_all(args.old.resolve(), (args.out / "before").resolve())
        run_all(args.new.resolve(), (args.out / "after").resolve())
    rows = compare(args.out / "before", args.out / "after")
    print(f"{'algo':<14} {'lines':>7} {'max rel diff':>13}  worst metric")
    for name, r in rows.items():
        if r["compared"]:
            lines = f"{r['lines'][0]}/{r['lines'][1]}"
            print(f"{name:<14} {lines:>7} {r['max_rel_diff']:>13.2e}  {r['worst_metric']}")
        else:
            print(f"{name:<14} not compared (a run is missing)")
    text = json.dumps({"runs": RUNS, "common": COMMON, "results": rows}, indent=1)
    (args.out / "summary.json").write_text(text)
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/before_after.json").write_text(text)


if __name__ == "__main__":
    main()
