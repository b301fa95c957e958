"""Row chunking (jlmarl.nets.rows): one update at several chunk sizes, and why.

    python benchmarks/row_chunks.py [--algos mmsa] [--env smax_3m] [--batch 128] [--T 50]
                                    [--rows 0 1024 2048 4096] [--rounds 6] [--out FILE]

Builds each learner as the CLI does (update_profile.update_args) and compiles its update
once per `rows.CPU_ROWS` value (0: no chunking), then times the compiled updates in
interleaved rounds (4 calls each per round; median and best over all calls), so that
drift in the machine's speed hits every variant alike. Also times one [R, 64] @ [64, 64]
product at R = 19.6k and 176k rows (smax_3m's rows per batch, and those rows times its 9
actions): the per-FLOP cost of leaving the cache; and `nets.sale.sale_features` alone (the
frozen encoders' z^{oa} for every action, which MMSA's update computes on the batch's
observations) at each chunk size, on a smax_3m-shaped batch of --batch x (--T + 1) steps.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import ab
import jax
import numpy as np
from update_profile import update_args

from jlmarl.nets import rows as row_chunks
from jlmarl.nets.sale import SaleEncoder, sale_features

ROOT = Path(__file__).resolve().parents[1]


def call_seconds(fn, args, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return times


def update_times(algo_name: str, env: str, batch: int, t: int, sizes: list[int], rounds: int) -> dict:
    algo, args = update_args(algo_name, env, batch, t)
    compiled = {}
    for size in sizes:
        row_chunks.CPU_ROWS = size
        # a fresh function each time: jax.jit reuses the trace of a function it has seen
        compiled[size] = jax.jit(lambda *a: algo.update(*a)).lower(*args).compile()
        jax.block_until_ready(compiled[size](*args))
    times = {size: [] for size in sizes}
    for _ in range(rounds):
        for size in sizes:
            times[size] += call_seconds(compiled[size], args, 4)
    return {
        "algo": algo_name, "env": env, "batch": batch, "T": t,
        "median_ms": {str(s): 1000.0 * float(np.median(v)) for s, v in times.items()},
        "best_ms": {str(s): 1000.0 * float(np.min(v)) for s, v in times.items()},
    }  # fmt: skip


def sale_feature_times(batch: int, t: int, sizes: list[int], rounds: int) -> dict:
    """Median and best ms of sale_features on [batch, t + 1, 3, 30] observations (smax_3m's 3
    agents, observation width and 9 actions; MMSA's default widths) at each chunk size."""
    encoder = SaleEncoder(4, 64)
    obs = jax.random.normal(jax.random.PRNGKey(0), (batch, t + 1, 3, 30))
    params = encoder.init(jax.random.PRNGKey(1), obs[:1], jax.numpy.zeros((1, t + 1, 3, 9)))
    compiled = {}
    for size in sizes:
        row_chunks.CPU_ROWS = size
        compiled[size] = jax.jit(lambda p, o: sale_features(encoder, p, o, 9)).lower(params, obs).compile()
        jax.block_until_ready(compiled[size](params, obs))
    times = {size: [] for size in sizes}
    for _ in range(rounds):
        for size in sizes:
            times[size] += call_seconds(compiled[size], (params, obs), 10)
    return {
        "batch": batch, "T": t,
        "median_ms": {str(s): 1000.0 * float(np.median(v)) for s, v in times.items()},
        "best_ms": {str(s): 1000.0 * float(np.min(v)) for s, v in times.items()},
    }  # fmt: skip


def matmul_gflops(rows: int, width: int = 64) -> float:
    x = jax.random.normal(jax.random.PRNGKey(0), (rows, width))
    w = jax.random.normal(jax.random.PRNGKey(1), (width, width))
    dot = jax.jit(lambda x, w: x @ w)
    jax.block_until_ready(dot(x, w))
    seconds = float(np.median(call_seconds(dot, (x, w), 20)))
    return 2.0 * rows * width * width / seconds / 1e9


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algos", nargs="+", default=["mmsa"])
    parser.add_argument("--env", default="smax_3m")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--T", type=int, default=50)
    parser.add_argument("--rows", type=int, nargs="+", default=[0, 1024, 2048, 4096])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "row_chunks.json")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    matmul = {str(r): matmul_gflops(r) for r in (19584, 176256)}
    print("[R, 64] @ [64, 64]: " + ", ".join(f"R = {r}: {g:.0f} GFLOP/s" for r, g in matmul.items()))
    features = sale_feature_times(args.batch, args.T, args.rows, args.rounds)
    print(
        "sale_features alone: "
        + ", ".join(f"rows {s}: {features['median_ms'][str(s)]:.1f} ms" for s in args.rows)
    )
    results = []
    print(f"{'algo':<8} " + " ".join(f"{'rows ' + str(s):>11}" for s in args.rows) + "   (median ms)")
    for name in args.algos:
        r = update_times(name, args.env, args.batch, args.T, args.rows, args.rounds)
        results.append(r)
        print(f"{name:<8} " + " ".join(f"{r['median_ms'][str(s)]:>11.1f}" for s in args.rows), flush=True)
    out = ab.header("row_chunks.py", None, ROOT) | {
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average_start": load,
        "load_average_end": os.getloadavg()[0],
        "matmul_64x64_gflops_by_rows": matmul,
        "sale_features": features,
        "updates": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
