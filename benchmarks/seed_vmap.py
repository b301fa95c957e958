"""One update with and without the seed vmap: why a one-seed run skips it.

    python benchmarks/seed_vmap.py [--algos qmix vdfd mmsa] [--env smax_3m] [--batch 128]
                                   [--T 50] [--reps 7] [--out FILE]

Builds each learner as the CLI does and times its jitted update on a random batch
(update_profile.update_args) three ways: plain; under `jax.vmap` over a seed axis of
size 1 (what the engine did for every run); and through `core.engine.over_seeds` on
that axis (what it does now). Median of --reps calls after one warm-up; prints a table
and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import numpy as np
from update_profile import update_args

from jlmarl.core.engine import over_seeds

ROOT = Path(__file__).resolve().parents[1]


def median_ms(fn, args, reps: int) -> float:
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def measure(algo_name: str, env: str, batch: int, t: int, reps: int) -> dict:
    algo, args = update_args(algo_name, env, batch, t)
    one_seed = jax.tree.map(lambda x: x[None], args)
    return {
        "algo": algo_name, "env": env, "batch": batch, "T": t,
        "plain_ms": median_ms(algo.update, args, reps),
        "vmap1_ms": median_ms(jax.vmap(algo.update), one_seed, reps),
        "over_seeds_ms": median_ms(over_seeds(algo.update), one_seed, reps),
    }  # fmt: skip


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algos", nargs="+", default=["qmix", "vdfd", "mmsa"])
    parser.add_argument("--env", default="smax_3m")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--T", type=int, default=50)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "seed_vmap.json")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = []
    print(f"{'algo':<8} {'plain ms':>9} {'vmap(1) ms':>11} {'over_seeds ms':>14}")
    for name in args.algos:
        r = measure(name, args.env, args.batch, args.T, args.reps)
        rows.append(r)
        ms = f"{r['plain_ms']:>9.1f} {r['vmap1_ms']:>11.1f} {r['over_seeds_ms']:>14.1f}"
        print(f"{name:<8} {ms}", flush=True)
    out = {
        "command": f"python benchmarks/seed_vmap.py --algos {' '.join(args.algos)} --env {args.env} "
        f"--batch {args.batch} --T {args.T} --reps {args.reps}",
        "machine": f"{os.uname().machine}, {os.cpu_count()} cores",
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average_start": load,
        "load_average_end": os.getloadavg()[0],
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
