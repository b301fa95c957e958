"""What each part of a learner costs per update: the update timed with parts switched off
by config overrides, every variant in one process, in interleaved rounds.

    python benchmarks/update_variants.py [--env smax_3m] [--batch 32] [--T 50] [--rounds 6]
                                         [--variant NAME=algo[,key=value...] ...] [--out FILE]

Default variants: MMSA as configured, its diagnostics on one episode, horizon 1, No-WM,
No-SALE, and QMIX. Each is built as the CLI builds it and jitted on the same shapes of
random batch (update_profile.update_args); after one warm-up call per variant, each round
times 8 calls of every variant in turn, so that drift in the machine's speed hits them
alike (on a noisy host, timings from separate processes are not comparable). Prints each
variant's median and best ms, its ratio to the first variant and its matrix-product GFLOP
per update (jlmarl.core.flops, on the jaxpr), and writes JSON. A difference between
variants is the cost of what the override removes, at these shapes.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import ab
import jax
import numpy as np
from row_chunks import call_seconds
from update_profile import update_args

from jlmarl.core.flops import count_matmul_flops

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VARIANTS = [
    "mmsa=mmsa",
    "diag_1_episode=mmsa,mmsa.diag_episodes=1",
    "horizon_1=mmsa,mmsa.horizon=1",
    "no_wm=mmsa,mmsa.world_model=false",
    "no_sale=mmsa,mmsa.sale=false",
    "qmix=qmix",
]


def parse_variant(text: str) -> tuple[str, str, tuple[str, ...]]:
    name, _, spec = text.partition("=")
    algo, *overrides = spec.split(",")
    if not name or not algo:
        raise SystemExit(f"--variant {text!r}: write NAME=algo[,key=value...]")
    return name, algo, tuple(overrides)


def time_variants(variants, env: str, batch: int, t: int, rounds: int, calls: int = 8):
    """({name: seconds of each call}, {name: matrix-product GFLOP of one update})."""
    compiled, gflop = {}, {}
    for name, algo_name, overrides in variants:
        algo, args = update_args(algo_name, env, batch, t, overrides)
        gflop[name] = count_matmul_flops(algo.update, *args).total / 1e9
        fn = jax.jit(algo.update).lower(*args).compile()
        jax.block_until_ready(fn(*args))
        compiled[name] = (fn, args)
    times = {name: [] for name in compiled}
    for _ in range(rounds):
        for name, (fn, args) in compiled.items():
            times[name] += call_seconds(fn, args, calls)
    return times, gflop


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="smax_3m")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--T", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--variant", action="append", default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "update_variants.json")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variant or DEFAULT_VARIANTS]
    load = os.getloadavg()[0]
    times, gflop = time_variants(variants, args.env, args.batch, args.T, args.rounds)
    first = 1000.0 * float(np.median(times[variants[0][0]]))
    rows = []
    print(f"{args.env}, batch {args.batch} x T {args.T}, {args.rounds} rounds")
    print(f"{'variant':<18} {'median ms':>10} {'best ms':>9} {'vs first':>9} {'GFLOP':>7}   algo, overrides")
    for name, algo_name, overrides in variants:
        ms = 1000.0 * np.asarray(times[name])
        row = {
            "variant": name, "algo": algo_name, "overrides": list(overrides),
            "median_ms": float(np.median(ms)), "best_ms": float(ms.min()),
            "vs_first": float(np.median(ms)) / first, "matmul_gflop": gflop[name],
            "round_medians_ms": [float(np.median(r)) for r in np.split(ms, args.rounds)],
        }  # fmt: skip
        rows.append(row)
        print(
            f"{name:<18} {row['median_ms']:>10.1f} {row['best_ms']:>9.1f} {row['vs_first']:>9.2f} "
            f"{row['matmul_gflop']:>7.2f}   " + " ".join((algo_name, *overrides))
        )
    out = ab.header("update_variants.py", None, ROOT) | {
        "env": args.env, "batch": args.batch, "T": args.T, "rounds": args.rounds,
        "load_average_start": load, "load_average_end": os.getloadavg()[0], "variants": rows,
    }  # fmt: skip
    ab.write(args.out, out)


if __name__ == "__main__":
    main()
