"""Seed sweeps on one device: wall time and seeds x env-steps/s for num_seeds in {1, 4, 16, 64}.

    python benchmarks/sweep.py [--envs matrix_three_state smax_3m] [--seeds 1 4 16 64] [--chunks 20]
                               [--algo qmix] [key=value ...]

For each env and seed count: builds the run (`python -m jlmarl.train`'s own build), times
the first chunk's compile, then `--chunks` training chunks (collect, update, no
evaluation), and reports env steps per second summed over seeds. A seed sweep is one
vmapped program: on an accelerator 16 seeds should cost well under 16x one seed's wall
time. The buffer is kept small (buffer_size=256 by default) so that 64 seeds fit in
memory; trailing key=value pairs override any setting. Writes
benchmarks/results/sweep_<device>.json (device, load average, every figure).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

from jlmarl.config import load_config
from jlmarl.train import build


def measure(algo: str, env: str, seeds: int, chunks: int, overrides: list[str]) -> dict:
    cfg = load_config(
        [f"algo={algo}", f"env={env}", f"num_seeds={seeds}", "buffer_size=256", "batch_size=32", *overrides]
    )
    engine = build(cfg)
    carry = engine.init(engine.seed_keys(list(range(seeds))))
    no_eval = np.zeros(seeds, bool)
    t0 = time.perf_counter()
    train = np.ones(seeds, bool)
    chunk = engine.chunk.lower(carry, np.int32(0), train, no_eval).compile()
    compile_s = time.perf_counter() - t0
    carry, _, _ = chunk(carry, np.int32(0), train, no_eval)  # fills the buffer past batch_size
    for i in range(1, 4):
        carry, _, _ = chunk(carry, np.int32(i), train, no_eval)
    start_steps = np.asarray(carry.env_steps).sum()
    jax.block_until_ready(carry)
    t0 = time.perf_counter()
    for i in range(4, 4 + chunks):
        carry, _, _ = chunk(carry, np.int32(i), train, no_eval)
    jax.block_until_ready(carry)
    wall = time.perf_counter() - t0
    steps = int(np.asarray(carry.env_steps).sum() - start_steps)
    return {
        "algo": algo,
        "env": env,
        "num_seeds": seeds,
        "num_envs": int(cfg.num_envs),
        "compile_s": round(compile_s, 2),
        "chunks": chunks,
        "wall_s": round(wall, 3),
        "seed_env_steps_per_s": round(steps / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=["matrix_three_state", "smax_3m"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--algo", default="qmix")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    device = jax.devices()[0]
    rows = []
    print(f"{'env':<20} {'seeds':>5} {'compile s':>9} {'wall s':>8} {'seeds*steps/s':>14} {'x one seed':>10}")
    for env in args.envs:
        one = None
        for seeds in args.seeds:
            row = measure(args.algo, env, seeds, args.chunks, args.overrides)
            one = row["wall_s"] if one is None else one
            row["wall_vs_one_seed"] = round(row["wall_s"] / one, 2)
            rows.append(row)
            print(
                f"{env:<20} {seeds:>5} {row['compile_s']:>9} {row['wall_s']:>8} "
                f"{row['seed_env_steps_per_s']:>14} {row['wall_vs_one_seed']:>10}",
                flush=True,
            )
    out = {
        "device": f"{device.platform}: {device.device_kind}",
        "load_average_1m": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "overrides": args.overrides,
        "rows": rows,
    }
    path = Path(f"benchmarks/results/sweep_{device.platform}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
