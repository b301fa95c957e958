"""Does the replay buffer's capacity change what one training chunk costs?

    python benchmarks/buffer_copy.py [--algos qmix mmsa] [--envs smax_3m smax_5m_vs_6m]
                                     [--buffer-sizes 128 5000] [--chunks 10] [--json PATH]

For every (algo, env, buffer_size): the compiled chunk (num_envs 8, one seed, the
learner's own defaults otherwise) is run until training starts, then `--chunks` training
chunks are timed (ms per chunk, env steps/s), and the optimised program is searched for
copy instructions of the buffer's [seeds, capacity, ...] arrays (`buffer_copies`, with
their bytes). A chunk only writes num_envs episodes into the buffer and reads batch_size
of them, so its cost should not depend on the capacity; until the buffer write moved out
of the chunk's lax.cond (jlmarl/core/engine.py, `_train_replay`) XLA copied the whole
buffer twice per chunk, and a default run (buffer_size 5000) paid for it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jlmarl.config import load_config
from jlmarl.train import build

RESULTS = Path(__file__).parent / "results"


def buffer_copies(hlo: str, capacity: int) -> tuple[int, int]:
    """(count, bytes) of copy instructions whose result has leading axes [1, capacity]."""
    sizes = {"f32": 4, "s32": 4, "u32": 4, "pred": 1}
    count = nbytes = 0
    for dtype, dims in re.findall(rf"= (\w+)\[(1,{capacity}(?:,\d+)*)\]\S* copy\(", hlo):
        count += 1
        nbytes += sizes.get(dtype, 4) * int(np.prod([int(d) for d in dims.split(",")]))
    return count, nbytes


def measure(algo: str, env: str, capacity: int, chunks: int, overrides: list[str]) -> dict:
    cfg = load_config(
        [f"algo={algo}", f"env={env}", "num_envs=8", "num_seeds=1", f"buffer_size={capacity}"]
        + ["run_dir=/tmp/unused", *overrides]
    )
    engine = build(cfg)
    carry = engine.init(engine.seed_keys([0]))
    due, on = np.zeros(1, bool), np.ones(1, bool)
    t0 = time.perf_counter()
    chunk = engine.chunk.lower(carry, np.int32(0), on, due).compile()
    compile_s = time.perf_counter() - t0
    copies, copy_bytes = buffer_copies(chunk.as_text(), capacity)
    index = 0
    while True:  # until the buffer holds a batch and the chunk trains
        carry, metrics, _ = chunk(carry, np.int32(index), on, due)
        index += 1
        if float(metrics["trained"][0]) > 0:
            break
    start_steps, start = int(carry.env_steps.sum()), time.perf_counter()
    for k in range(chunks):
        carry, metrics, _ = chunk(carry, np.int32(index + k), on, due)
    jax.block_until_ready(carry)
    seconds = time.perf_counter() - start
    return {
        "algo": algo,
        "env": env,
        "buffer_size": capacity,
        "batch_size": int(cfg.batch_size),
        "updates_per_chunk": engine.cfg.updates_per_chunk,
        "chunk_ms": 1000 * seconds / chunks,
        "train_sps": (int(carry.env_steps.sum()) - start_steps) / seconds,
        "buffer_copies": copies,
        "buffer_copy_mib": copy_bytes / 2**20,
        "chunk_compile_s": compile_s,
        "overrides": overrides,
    }


def main():
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--algos", nargs="+", default=["qmix"])
    parser.add_argument("--envs", nargs="+", default=["smax_3m"])
    parser.add_argument("--buffer-sizes", nargs="+", type=int, default=[128, 5000])
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--json", default=str(RESULTS / "buffer_copy.json"))
    args, overrides = parser.parse_known_args()
    rows, load_start = [], os.getloadavg()[0]
    print(f"{'algo':8} {'env':15} {'buffer':>7} {'ms/chunk':>9} {'steps/s':>8} {'copies':>6} {'MiB':>6}")
    for algo in args.algos:
        for env in args.envs:
            for capacity in args.buffer_sizes:
                r = measure(algo, env, capacity, args.chunks, overrides)
                rows.append(r)
                print(
                    f"{algo:8} {env:15} {capacity:7d} {r['chunk_ms']:9.0f} {r['train_sps']:8.0f} "
                    f"{r['buffer_copies']:6d} {r['buffer_copy_mib']:6.0f}",
                    flush=True,
                )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join(["python", *sys.argv]),
        "device": jax.devices()[0].device_kind,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0],
        "rows": rows,
    }
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
