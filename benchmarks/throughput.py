"""Engine throughput: env-only, collection and full training (QMIX by default), in env steps/s.

    python benchmarks/throughput.py [--algos qmix limarl mmsa] [--envs smax_3m smax_corridor]
                                    [--num-envs 8 64 512] [--num-seeds 1 8] [--settle-chunks 6]
                                    [--rounds R] [--update-len T] [--json PATH] [key=value ...]

For every (algo, env, num_envs, num_seeds):
  env_only_sps  the episode rollout with uniformly random valid actions (the floor
                of what collection can reach: same rollout code, no network)
  collect_sps   the rollout acting through the learner's agent network (epsilon-greedy), no updates
  train_sps     the full compiled chunk (collect, store, K = num_envs/8 updates of 128
                episodes, target update), with training active, timed for every learner
                after the same --settle-chunks training chunks (and for LIMARL after its
                Phase I: pretrain_chunks chunks, timed as pretrain_chunk_s); with
                --rounds R, the learners of a setting are all prepared first and timed
                in R alternated rounds (train_sps_rounds, and each round's ratio to QMIX)
  ep_length     mean episode length in the timed chunks: updates cut batches to the
                longest sampled episode (time buckets), so learners whose policies play
                longer episodes pay more per update; compare train_sps with this in view
  update_s_T    seconds of one update (all seeds) on a batch of the learner's own buffer
                cut to T = --update-len steps: the per-update cost at equal shapes
  chunk_compile_s  compile time of that chunk
and where one chunk's time goes: env (env-only time), acting (collect - env),
updates (train - collect). Steps are real env steps summed over seeds; padding
after an episode ends is not counted. The buffer holds max(num_envs, 128)
episodes per seed (capacity does not change the per-chunk work). Every learner is timed
at the same engine settings: batches of 128 episodes (`batch_size=32` on the command line
gives MMSA's Table 6 batch, for every learner) and one update per 8 collected episodes,
the engine's default (MMSA's own config trains once per episode, Table 6's episodic
runner: 8x the updates per env step, a setting rather than a cost of the method).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jlmarl.config import load_config
from jlmarl.core.buffer import buffer_sample
from jlmarl.core.engine import over_seeds
from jlmarl.core.rollout import UniformRandomPolicy, init_stream, run_episodes, run_segment
from jlmarl.train import build


def timed(fn, *args, min_reps=2, budget_s=8.0):
    """Mean seconds per call after one warm-up call (compile excluded)."""
    jax.block_until_ready(fn(*args))
    reps, start = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - start < budget_s:
        out = jax.block_until_ready(fn(*args))
        reps += 1
        if reps >= 50:
            break
    return (time.perf_counter() - start) / reps, out


def prepare(
    env_name: str,
    num_envs: int,
    num_seeds: int,
    algo_name: str = "qmix",
    overrides: tuple[str, ...] = (),
    settle_chunks: int = 6,
) -> dict:
    """Everything before the timed training chunks: env-only and collection speed, the
    compiled chunk, and a carry past the buffer fill, Phase I and --settle-chunks chunks."""
    cfg = load_config(
        [
            f"algo={algo_name}",
            f"env={env_name}",
            f"num_envs={num_envs}",
            f"num_seeds={num_seeds}",
            f"buffer_size={max(num_envs, 128)}",
            "batch_size=128",
            # MMSA's config trains once per episode (Table 6): time it at the engine's default
            *(["episodes_per_update=8"] if algo_name == "mmsa" else []),
            "run_dir=/tmp/unused",
            *overrides,
        ]
    )
    engine = build(cfg)
    keys = engine.seed_keys(range(num_seeds))
    carry = engine.init(keys)
    env, algo = engine.env, engine.algo

    segment = algo.segment_length  # on-policy segment learners (PQN) collect from persistent envs

    def rollout_steps(policy):
        def per_seed(ts, key):
            if segment:
                stream = init_stream(env, policy, key, num_envs)
                stream, _, _ = run_segment(env, policy, ts, stream, key, segment, 0)
                # every step counts; the result is read so that XLA cannot drop the rollout
                return jnp.where(jnp.isnan(stream.ep_return.sum()), 0, num_envs * segment)
            _, stats = run_episodes(env, policy, ts, key, num_envs, 0, False)
            return stats.lengths.sum()

        return jax.jit(lambda ts, k: jax.vmap(per_seed)(ts, k).sum())

    env_s, env_steps = timed(rollout_steps(UniformRandomPolicy()), carry.train_state, keys)
    col_s, col_steps = timed(rollout_steps(algo), carry.train_state, keys)

    due = np.zeros(num_seeds, bool)
    t0 = time.perf_counter()
    chunk = engine.chunk.lower(carry, np.int32(0), np.ones_like(due), due).compile()
    compile_s = time.perf_counter() - t0
    # LIMARL's Phase I (representation pre-training on its first update calls, 20 extra
    # gradient steps each) is a one-off of the first pretrain_episodes episodes: time it
    # apart and measure the steady state after it, which is what a long run sees.
    # Every learner is timed after the same number of training chunks, so that their
    # exploration (and with it episode lengths) is at the same stage.
    index, warmup_s, warmup_chunks, settled = 0, [], 0, 0
    while True:
        start = time.perf_counter()
        carry, metrics, _ = chunk(carry, np.int32(index), np.ones_like(due), due)
        jax.block_until_ready(carry)
        index += 1
        if float(np.min(metrics["trained"])) == 0.0:
            continue  # the buffer is still filling (training starts at batch_size episodes)
        if float(np.max(metrics.get("rep_trained", 0.0))) > 0.0 and warmup_chunks < 20:
            warmup_chunks += 1
            warmup_s.append(time.perf_counter() - start)
        elif settled >= settle_chunks:
            break
        settled += 1
    return {
        "algo_name": algo_name, "env_name": env_name, "num_envs": num_envs, "num_seeds": num_seeds,
        "overrides": overrides, "cfg": cfg, "engine": engine, "keys": keys, "chunk": chunk,
        "carry": carry, "index": index, "due": due, "env_s": env_s, "env_steps": env_steps,
        "col_s": col_s, "col_steps": col_steps, "compile_s": compile_s,
        "warmup_s": warmup_s, "warmup_chunks": warmup_chunks, "timed": [],
    }  # fmt: skip


def time_chunks(run: dict, budget_s: float = 20.0, min_reps: int = 3) -> float:
    """Runs timed training chunks (at least min_reps, then until budget_s or 50) on the
    prepared run, appends (env steps, seconds, episode lengths) to run["timed"] and returns
    this round's env steps/s."""
    chunk, due, carry = run["chunk"], run["due"], run["carry"]
    reps, steps, lengths, start = 0, 0, [], time.perf_counter()
    while reps < min_reps or (time.perf_counter() - start < budget_s and reps < 50):
        before = int(carry.env_steps.sum())
        carry, metrics, _ = chunk(carry, np.int32(run["index"] + reps), np.ones_like(due), due)
        steps += int(carry.env_steps.sum()) - before
        lengths.append(float(np.mean(metrics["ep_length"])))
        reps += 1
    seconds = time.perf_counter() - start
    run["carry"], run["index"] = carry, run["index"] + reps
    run["timed"].append((steps, seconds, reps, lengths))
    return steps / seconds


def record(run: dict, update_len: int | None = None) -> dict:
    """The record of a prepared and timed run, with one update at a fixed batch length."""
    engine, carry, keys = run["engine"], run["carry"], run["keys"]
    env, algo, cfg = engine.env, engine.algo, run["cfg"]
    steps = sum(t[0] for t in run["timed"])
    seconds = sum(t[1] for t in run["timed"])
    reps = sum(t[2] for t in run["timed"])
    train_s = seconds / reps
    # One update at a fixed batch length, on a batch of this learner's own buffer (on-policy
    # learners have none: their update is the chunk's, timed in train_sps).
    t_len = update_len or env.spec.episode_limit // 2
    update_s = None
    if algo.replay:
        batch = jax.vmap(buffer_sample, in_axes=(0, 0, None))(carry.buffer, keys, cfg.batch_size)
        # each seed's clock (and the newest episodes, for learners that ask) as the engine tells it
        phase = engine.phase_at(np.min(np.asarray(carry.updates)))
        ctx = jax.vmap(lambda c: engine._context(c, phase, None))(carry)
        update = jax.jit(over_seeds(lambda ts, b, k, x: algo.update(ts, b.truncate(t_len), k, x)))
        update_s, _ = timed(update, carry.train_state, batch, keys, ctx)
    env_s, col_s, warmup_s = run["env_s"], run["col_s"], run["warmup_s"]
    return {
        "algo": run["algo_name"],
        "env": run["env_name"],
        "num_envs": run["num_envs"],
        "num_seeds": run["num_seeds"],
        "env_only_sps": float(run["env_steps"]) / env_s,
        "collect_sps": float(run["col_steps"]) / col_s,
        "train_sps": steps / seconds,
        "train_sps_rounds": [t[0] / t[1] for t in run["timed"]],
        "ep_length": float(np.mean([x for t in run["timed"] for x in t[3]])),
        "update_len": t_len,
        "update_s_T": update_s,
        "chunk_compile_s": run["compile_s"],
        "chunk_s": train_s,
        "env_s": env_s,
        "acting_s": max(col_s - env_s, 0.0),
        "updates_s": max(train_s - col_s, 0.0),
        "updates_per_chunk": engine.cfg.updates_per_chunk,
        "pretrain_chunks": run["warmup_chunks"],  # chunks that also trained LIMARL's representation
        "pretrain_chunk_s": float(np.mean(warmup_s)) if warmup_s else None,
        "device": jax.devices()[0].device_kind,
        "overrides": list(run["overrides"]),
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algos", nargs="+", default=["qmix"], help="learners to time (e.g. qmix limarl)")
    parser.add_argument("--envs", nargs="+", default=["smax_3m", "smax_corridor"])
    parser.add_argument("--num-envs", nargs="+", type=int, default=[8, 64, 512])
    parser.add_argument("--num-seeds", nargs="+", type=int, default=[1, 8])
    parser.add_argument(
        "--settle-chunks", type=int, default=6, help="training chunks run by every learner before timing"
    )
    parser.add_argument(
        "--update-len",
        type=int,
        default=None,
        help="batch length T of the fixed-shape update timing (default: half the episode limit)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate the learners of each setting over this many timing rounds (20 s of chunks "
        "in all per learner), so that the machine's drift hits all alike; ratios to QMIX per round",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the records here (a JSON list)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run (algo.hidden_dim=64)")
    args = parser.parse_args()

    header = (
        f"{'algo':<8} {'env':<14} {'envs':>5} {'seeds':>5} {'env-only/s':>11} {'collect/s':>10} "
        f"{'coll/env':>8} {'train/s':>9} {'ep len':>6} {'upd s@T':>8} {'compile s':>9} {'chunk s':>8} "
        f"{'env%':>5} {'act%':>5} {'upd%':>5}"
    )
    print(header, flush=True)
    records = []
    settings = [(e, n, s) for e in args.envs for n in args.num_envs for s in args.num_seeds]
    for env_name, num_envs, num_seeds in settings:
        runs = [
            prepare(env_name, num_envs, num_seeds, a, tuple(args.overrides), args.settle_chunks)
            for a in args.algos
        ]
        for _ in range(args.rounds):
            for run in runs:
                time_chunks(run, 20.0 / args.rounds)
        for run in runs:
            r = record(run, args.update_len)
            records.append(r)
            split = [100 * r[k] / r["chunk_s"] for k in ("env_s", "acting_s", "updates_s")]
            print(
                f"{r['algo']:<8} {r['env']:<14} {num_envs:>5} {num_seeds:>5} {r['env_only_sps']:>11.0f} "
                f"{r['collect_sps']:>10.0f} {r['collect_sps'] / r['env_only_sps']:>8.2f} "
                f"{r['train_sps']:>9.0f} {r['ep_length']:>6.1f} "
                f"{'-' if r['update_s_T'] is None else format(r['update_s_T'], '.3f'):>8} "
                f"{r['chunk_compile_s']:>9.1f} {r['chunk_s']:>8.3f} "
                f"{split[0]:>5.0f} {split[1]:>5.0f} {split[2]:>5.0f}",
                flush=True,
            )
        add_qmix_ratios(records)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(records, indent=1))
    for r in records:
        if "train_sps_vs_qmix" in r:
            print(
                f"{r['algo']} / qmix on {r['env']} ({r['num_envs']} envs, {r['num_seeds']} seeds): "
                f"training throughput {r['train_sps_vs_qmix']:.0%}"
                + (
                    f" (rounds: median {np.median(r['train_sps_vs_qmix_rounds']):.0%}, "
                    f"{min(r['train_sps_vs_qmix_rounds']):.0%}-{max(r['train_sps_vs_qmix_rounds']):.0%})"
                    if len(r["train_sps_vs_qmix_rounds"]) > 1
                    else ""
                )
                + (
                    f", update speed at T={r['update_len']} {r['update_T_vs_qmix']:.0%}"
                    if r["update_s_T"]
                    else ""
                )
            )


def add_qmix_ratios(records: list[dict]) -> None:
    """Each record's train_sps and update speed relative to QMIX's at the same env,
    num_envs and num_seeds (when QMIX was measured)."""
    setting = lambda r: (r["env"], r["num_envs"], r["num_seeds"])  # noqa: E731
    qmix = {setting(q): q for q in records if q["algo"] == "qmix"}
    for r in records:
        base = qmix.get(setting(r))
        if base:
            r["train_sps_vs_qmix"] = r["train_sps"] / base["train_sps"]
            pairs = zip(r["train_sps_rounds"], base["train_sps_rounds"], strict=True)
            r["train_sps_vs_qmix_rounds"] = [a / b for a, b in pairs]
            if r["update_s_T"]:
                r["update_T_vs_qmix"] = base["update_s_T"] / r["update_s_T"]


if __name__ == "__main__":
    main()
