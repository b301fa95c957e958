"""Cold and warm-cache chunk compile time of every learner, in two checkouts (before/after).

    python benchmarks/compile_time.py [--old /path/to/old_checkout] [--algos qmix limarl ...]
                                      [--envs smax_3m matrix_three_state] [--out FILE]

Each figure is a fresh `python -m jlmarl.train` process: the "chunk compiled in X s"
line it prints (the compile of the whole collect-and-update chunk, the part a user waits
for before the first step), and the process's wall time for a tiny run. "cold": nothing
cached (the new checkout's run starts on an empty cache folder, which it fills; checkouts
from before the cache had none). "warm": the same command again on that folder (new
checkout only). A learner an env refuses (the I2Q family outside the belief grids) runs on
`oracle` instead, and one missing from the old checkout is measured in the new one only.
Resumable: rows already in --out are kept unless --force. Writes JSON with the command,
machine and load average of every row (compile time is CPU-bound: read it with the load).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ab

ROOT = Path(__file__).resolve().parents[1]
ALGOS = [
    "iql", "vdn", "qmix", "limarl", "lsf_sac", "masac", "rec_i2q", "rec_hyst_iql", "belief_i2q",
    "mmsa", "vdfd", "pqn_vdn", "pqn_qmix",
]  # fmt: skip
I2Q_FAMILY = {"rec_i2q", "rec_hyst_iql", "belief_i2q"}
TINY = ["num_seeds=1", "num_envs=4", "batch_size=8", "buffer_size=64", "test_episodes=4", "plot=false"]
TINY += ["progress=false", "checkpoint_interval=100000000"]


def env_for(algo: str, env: str) -> str:
    return "oracle" if algo in I2Q_FAMILY else env


def one_run(checkout: Path, algo: str, env: str, extra: list[str], run_dir: Path) -> dict:
    steps = 1000 if env.startswith("smax") else 400
    args = [f"algo={algo}", f"env={env}", *TINY, f"total_steps={steps}", f"test_interval={steps}"]
    if algo.startswith("pqn"):
        args += ["pqn.minibatches=2"]
    if algo == "limarl":
        args += ["limarl.pretrain_episodes=8", "limarl.val_episodes=2", "limarl.monitor_episodes=2"]
        # checkouts that count the warm-up in representation steps check that it fits Phase I
        counted = "representation gradient steps" in (checkout / "configs/algo/limarl.yaml").read_text()
        args += ["limarl.kl_warmup=5"] if counted else []
    if algo == "belief_i2q":  # its belief model is pre-trained once, outside the timing
        belief = [
            "belief_i2q.episodes=64",
            "belief_i2q.train_steps=20",
            f"belief_i2q.checkpoint={run_dir}_belief",
        ]
        pretrain = [sys.executable, "-m", "jlmarl.pretrain_belief", f"env={env}", *belief]
        subprocess.run(pretrain, cwd=checkout, capture_output=True, text=True, timeout=1800, check=True)
        args += belief
    command = [sys.executable, "-m", "jlmarl.train", *args, *extra, f"run_dir={run_dir}"]
    env_vars = ab.child_env()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = subprocess.run(command, cwd=checkout, env=env_vars, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    found = re.search(r"chunk compiled in ([0-9.]+)s", result.stdout)
    tail = (result.stderr.strip().splitlines() or [""])[-1][:300]
    return {
        "exit": result.returncode,
        "compile_s": float(found.group(1)) if found else None,
        "process_s": round(wall, 1),
        "load_average": load,
        "error": None if result.returncode == 0 else tail,
    }


def has_algo(checkout: Path, algo: str) -> bool:
    """belief_i2q is left out of old checkouts: they pre-trained its belief through another
    CLI (pretrain_belief) with other keys, so one command cannot time both."""
    return algo != "belief_i2q" and (checkout / "configs" / "algo" / f"{algo}.yaml").is_file()


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", type=Path, help="checkout of the code before (a git worktree)")
    parser.add_argument("--algos", nargs="+", default=ALGOS)
    parser.add_argument("--envs", nargs="+", default=["matrix_three_state", "smax_3m"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "compile_time.json")
    parser.add_argument("--force", action="store_true", help="measure rows already in --out again")
    args = parser.parse_args()
    out = json.loads(args.out.read_text()) if args.out.is_file() else {"rows": {}}
    out |= ab.header("compile_time.py", args.old, ROOT)
    out["commands"] = [*out.get("commands", []), out["command"]]  # a resumed file keeps every call
    print(f"{'algo':<13} {'env':<19} {'old cold':>9} {'new cold':>9} {'new warm':>9} {'load':>5}")
    measured = set()
    with tempfile.TemporaryDirectory(prefix="jlmarl-compile-") as tmp:
        for env in args.envs:
            for algo in args.algos:
                name = env_for(algo, env)
                key = f"{algo}@{name}"
                if key in measured or (key in out["rows"] and not args.force):
                    continue  # the I2Q family runs on oracle for every --envs entry: once
                measured.add(key)
                row = {"algo": algo, "env": name}
                if args.old and has_algo(args.old, algo):
                    row["old_cold"] = one_run(args.old, algo, name, [], Path(tmp) / f"old_{key}")
                cache = f"compile_cache={tmp}/cache_{key}"  # empty: the cold run fills it
                row["new_cold"] = one_run(ROOT, algo, name, [cache], Path(tmp) / f"cold_{key}")
                row["new_warm"] = one_run(ROOT, algo, name, [cache], Path(tmp) / f"warm_{key}")
                out["rows"][key] = row
                ab.write(args.out, out)
                cells = [row.get(k, {}).get("compile_s") for k in ("old_cold", "new_cold", "new_warm")]
                text = ["-" if c is None else f"{c:.1f}s" for c in cells]
                print(
                    f"{algo:<13} {name:<19} {text[0]:>9} {text[1]:>9} {text[2]:>9} "
                    f"{row['new_cold']['load_average']:>5.1f}",
                    flush=True,
                )
                for k in ("old_cold", "new_cold", "new_warm"):
                    if row.get(k, {}).get("error"):
                        print(f"  {k}: exit {row[k]['exit']}: {row[k]['error']}")


if __name__ == "__main__":
    main()
