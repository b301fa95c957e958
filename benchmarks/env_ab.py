"""Env-only throughput of SMAX maps in two checkouts, alternated (an A/B on one machine).

    python benchmarks/env_ab.py --old /path/to/old_checkout [--maps smax_3m smax_2s3z]
                                [--envs 64 512] [--rounds 3] [--steps 100] [--out FILE]

For each map and env count, each round runs one fresh process per checkout (old, then
new; the checkout's own code), which times `--steps` steps of n auto-resetting envs taking
uniformly random available actions (one jitted lax.scan, the compile excluded) and prints
steps/s. Reports the median over rounds and new/old per map; a round's pair shares the
machine's load. Writes JSON (command, commits, load averages, every figure).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

import ab

ROOT = Path(__file__).resolve().parents[1]
SNIPPET = """
import sys, time, jax, jax.numpy as jnp
from jlmarl import envs
from jlmarl.envs.base import AutoReset
name, n, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
env = AutoReset(envs.make(name))
def run(keys):
    states, ts = jax.vmap(env.reset)(keys)
    def body(carry, key):
        states, avail = carry
        k_act, k_step = jax.random.split(key)
        actions = jax.random.categorical(k_act, jnp.where(avail, 0.0, -jnp.inf)).astype(jnp.int32)
        states, ts = jax.vmap(env.step)(jax.random.split(k_step, n), states, actions)
        return (states, ts.avail), ts.reward.sum()
    return jax.lax.scan(body, (states, ts.avail), jax.random.split(keys[0], steps))[1].sum()
run = jax.jit(run)
run(jax.random.split(jax.random.PRNGKey(0), n)).block_until_ready()
best = []
for r in range(3):
    keys = jax.random.split(jax.random.PRNGKey(r + 1), n)
    t0 = time.perf_counter(); run(keys).block_until_ready(); best.append(time.perf_counter() - t0)
print(n * steps / min(best))
"""


def measure(checkout: Path, name: str, n: int, steps: int) -> float:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(checkout)}
    result = subprocess.run(
        [sys.executable, "-c", SNIPPET, name, str(n), str(steps)],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=1200, check=True,
    )  # fmt: skip
    return float(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--maps", nargs="+", default=["smax_3m", "smax_2s3z"])
    parser.add_argument("--envs", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "env_ab.json")
    args = parser.parse_args()
    rows = []
    print(f"{'map':<12} {'envs':>5} {'old steps/s':>12} {'new steps/s':>12} {'new/old':>8}")
    for name in args.maps:
        for n in args.envs:
            old, new, loads = [], [], []
            for _ in range(args.rounds):
                loads.append(os.getloadavg()[0])
                old.append(measure(args.old, name, n, args.steps))
                new.append(measure(ROOT, name, n, args.steps))
            row = {
                "map": name, "envs": n, "old": old, "new": new, "load_averages": loads,
                "old_median": statistics.median(old), "new_median": statistics.median(new),
                "pair_ratios": [b / a for a, b in zip(old, new, strict=True)],
            }  # fmt: skip
            row["new_over_old"] = row["new_median"] / row["old_median"]
            rows.append(row)
            print(
                f"{name:<12} {n:>5} {row['old_median']:>12,.0f} {row['new_median']:>12,.0f} "
                f"{row['new_over_old']:>7.0%}",
                flush=True,
            )
    ab.write(args.out, {**ab.header("env_ab.py", args.old, ROOT), "rows": rows})


if __name__ == "__main__":
    main()
