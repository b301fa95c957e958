"""Checkpoint save and restore time with a full replay buffer (the checkpoints a long
run writes every checkpoint_interval).

    python benchmarks/checkpoint_speed.py [--algo qmix] [--env smax_3m] [--episodes 5000] [--repeats 3]

Builds the run's real carry (engine.init), fills the whole buffer with random data
(zeros would compress unrealistically well), then times Checkpointer.save (blocking,
as the CLI saves) and restore_latest, `repeats` times each, in a temporary folder.
Prints a table and writes benchmarks/results/checkpoint_speed.json (with the machine's
load average: on a busy machine the figures are upper bounds).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from jlmarl.config import load_config
from jlmarl.train import build, open_checkpoints


def fill(carry, key):
    """Every buffer array replaced by random values of its dtype; the buffer marked full."""
    leaves, tree = jax.tree.flatten(carry.buffer.data)
    keys = jax.random.split(key, len(leaves))
    filled = [
        jax.random.normal(k, x.shape).astype(x.dtype)
        if x.dtype.kind == "f"
        else jax.random.bernoulli(k, 0.5, x.shape).astype(x.dtype)
        for k, x in zip(keys, leaves, strict=True)
    ]
    data = jax.tree.unflatten(tree, filled)
    full = carry.buffer.replace(data=data, size=carry.buffer.size * 0 + carry.buffer.capacity)
    return carry.replace(buffer=full)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", default="qmix")
    parser.add_argument("--env", default="smax_3m")
    parser.add_argument("--episodes", type=int, default=5000, help="buffer_size, filled completely")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/checkpoint_speed.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            [f"algo={args.algo}", f"env={args.env}", f"buffer_size={args.episodes}", f"run_dir={tmp}/run"]
        )
        engine = build(cfg)
        carry = fill(engine.init(engine.seed_keys([0])), jax.random.PRNGKey(1))
        nbytes = sum(x.nbytes for x in jax.tree.leaves(carry))
        ckpt, abstract = open_checkpoints(cfg, Path(tmp) / "run", carry)
        saves, restores = [], []
        for step in range(args.repeats):
            t0 = time.perf_counter()
            ckpt.save(step, carry, {"chunk_idx": step}, say=lambda *_: None)
            saves.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            restored, _, _ = ckpt.restore_latest(abstract, say=lambda *_: None)
            jax.block_until_ready(restored)
            restores.append(time.perf_counter() - t0)
        ok = all(
            np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(restored), strict=True)
        )
    result = {
        "algo": args.algo,
        "env": args.env,
        "buffer_episodes": args.episodes,
        "checkpoint_mib": round(nbytes / 2**20, 1),
        "save_s": [round(x, 3) for x in saves],
        "restore_s": [round(x, 3) for x in restores],
        "save_median_s": round(float(np.median(saves)), 3),
        "restore_median_s": round(float(np.median(restores)), 3),
        "restored_equal": ok,
        "load_average_1m": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
    }
    mib = result["checkpoint_mib"]
    print(f"{'what':<10} {'MiB':>8} {'median s':>9}  runs")
    print(f"{'save':<10} {mib:>8} {result['save_median_s']:>9}  {result['save_s']}")
    print(f"{'restore':<10} {mib:>8} {result['restore_median_s']:>9}  {result['restore_s']}")
    load = result["load_average_1m"]
    print(f"restored equal to saved: {ok}; load average {load:.1f} on {os.cpu_count()} cores")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
