"""PQN-VDN and PQN-QMIX against QMIX and VDN at equal env steps, through a sweep and `jlmarl.compare`.

    python benchmarks/pqn.py [--algos pqn_vdn pqn_qmix qmix vdn] [--envs smax_3m smax_2s3z]
                             [--seeds 3] [--steps 1000000] [--sweep-dir runs/pqn_bench]
                             [--out benchmarks/results/pqn] [--report-only] [key=value ...]

Runs `python -m jlmarl.train -m algo=<algos> env=<envs> num_seeds=<seeds> ...` (a sweep:
every combination is one seed-vmapped run; the same command continues an interrupted
benchmark, finished runs are skipped), which ends with the compare report (IQM,
probability of improvement, performance profiles, sample-efficiency curves). Then reads
every run's test win rate and prints, per algorithm and env, the mean over seeds at every
100k env steps, the final mean (last three evaluations), and the env steps and wall-clock
seconds at which the mean first reached 0.8 and 0.9. `--report-only` summarises the runs
already in the sweep folder (finished or not) without training. Trailing key=value pairs
go to every run (e.g. algo.hidden_dim=64 for our network size). Writes <out>/summary.json
and copies the compare report there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from learning import curves, first_reach
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.8, 0.9)


def summarise(run_dir: Path) -> dict:
    cfg = OmegaConf.load(run_dir / "config.yaml")
    curve = curves(run_dir, cfg.num_seeds, "test_win_rate")
    row = {
        "algo": cfg.algo.name, "env": cfg.env.name, "seeds": cfg.num_seeds, "num_envs": cfg.num_envs,
        "run_dir": str(run_dir), "last_env_steps": curve["env_steps"][-1],
        "final_mean": float(np.mean(curve["mean"][-3:])), "curve": curve,
    }  # fmt: skip
    for t in THRESHOLDS:
        row[f"steps_to_{t}"], row[f"wall_s_to_{t}"] = first_reach(curve, t)
    return row


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algos", nargs="+", default=["pqn_vdn", "pqn_qmix", "qmix", "vdn"])
    parser.add_argument("--envs", nargs="+", default=["smax_3m", "smax_2s3z"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--sweep-dir", type=Path, default=Path("runs/pqn_bench"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pqn")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    command = [
        sys.executable, "-m", "jlmarl.train", "-m",
        f"algo={','.join(args.algos)}", f"env={','.join(args.envs)}",
        f"num_seeds={args.seeds}", f"total_steps={args.steps}", "test_interval=20000", "test_episodes=32",
        "progress=false", f"run_dir={args.sweep_dir}", *args.overrides,
    ]  # fmt: skip
    if not args.report_only:
        subprocess.run(command, check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    rows = [summarise(d) for d in sorted(args.sweep_dir.iterdir()) if (d / "metrics").is_dir()]
    args.out.mkdir(parents=True, exist_ok=True)
    if (args.sweep_dir / "compare").is_dir():
        shutil.copytree(args.sweep_dir / "compare", args.out / "compare", dirs_exist_ok=True)
    summary = {
        "command": "python benchmarks/pqn.py " + " ".join(sys.argv[1:]),
        "sweep": command[2:],
        "runs": rows,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    longest = max(r["last_env_steps"] for r in rows)
    marks = [m for m in range(100_000, args.steps + 1, 100_000) if m <= longest]
    print("test win rate, mean over seeds (env steps in thousands); to 0.8 / 0.9: env steps and wall s")
    print(
        f"{'algo':<9} {'env':<10}"
        + "".join(f"{m // 1000:>6}k" for m in marks)
        + f"{'final':>7}  to 0.8  to 0.9"
    )
    for r in rows:
        c = r["curve"]
        cells = "".join(f"{np.interp(m, c['env_steps'], c['mean']):>7.2f}" for m in marks)
        reach = [
            f"{r[f'steps_to_{t}'] // 1000}k/{r[f'wall_s_to_{t}']:.0f}s" if r[f"steps_to_{t}"] else "never"
            for t in THRESHOLDS
        ]
        print(f"{r['algo']:<9} {r['env']:<10}{cells}{r['final_mean']:>7.2f}  {reach[0]}  {reach[1]}")
    print(f"wrote {args.out}/summary.json")


if __name__ == "__main__":
    main()
