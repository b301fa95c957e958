import dataclasses
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jlmarl import algos
from jlmarl.core.engine import Engine, EngineConfig
from jlmarl.core.rollout import run_episodes
from jlmarl.envs import matrix
from jlmarl.envs.matrix import MatrixGame
from jlmarl.train import run
from tests.helpers import update_ctx

TIMING = {"wall_s", "env_steps_per_s"}
TINY = [
    "env=matrix_three_state",
    "total_steps=1200",
    "num_envs=8",
    "batch_size=16",
    "test_interval=400",
    "test_episodes=4",
    "time_buckets=1",  # one compiled update (test_time_buckets_cut_only_padding covers buckets)
    "plot=false",
]


def read_metrics(run_dir, k):
    lines = (run_dir / "metrics" / f"seed_{k}.jsonl").read_text().splitlines()
    return [{key: v for key, v in json.loads(line).items() if key not in TIMING} for line in lines]


def test_seed_k_of_a_sweep_equals_a_lone_run_with_that_seed(make_cfg):
    """Also: the same config and seed twice gives identical metrics (test_runs.py checks it
    across processes, through a kill and resume)."""
    # Equal up to float rounding: XLA may order a batched (vmapped) reduction differently.
    sweep = make_cfg("algo=vdn", "num_seeds=2", "seed=3", *TINY, run_name="sweep")
    lone = make_cfg("algo=vdn", "num_seeds=1", "seed=4", *TINY, run_name="lone")
    run(sweep)
    run(lone)
    swept, alone = read_metrics(Path(sweep.run_dir), 1), read_metrics(Path(lone.run_dir), 0)
    for x, y in zip(swept, alone, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_allclose(x[key], y[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert read_metrics(Path(sweep.run_dir), 0) != swept  # the two seeds differ
    again = make_cfg("algo=vdn", "num_seeds=1", "seed=4", *TINY, run_name="again")
    run(again)
    assert read_metrics(Path(again.run_dir), 0) == alone  # same seed, same numbers, exactly
    assert {"env_steps", "loss", "test_return_mean", "test_ep_length", "return_mean"} <= set(alone[-1])
    assert alone[-1]["env_steps"] >= 1200


def test_vdn_learns_a_cooperative_one_state_game(make_cfg):
    payoff = np.array([[[10.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 5.0]]])
    env = MatrixGame("coop", payoff, episode_limit=1, observe="constant", random_start=False, terminal=True)
    cfg = make_cfg(
        "algo=vdn",
        "env=matrix_one_step",
        "num_envs=32",
        "batch_size=32",
        "buffer_size=512",
        "test_episodes=8",
        "algo.epsilon_anneal_steps=1000",
    )
    algo = algos.build("vdn", env.spec, cfg)
    engine = Engine(env, algo, EngineConfig.from_cfg(cfg))
    carry = engine.init(engine.seed_keys([0]))
    due = np.zeros(1, bool)
    for i in range(60):
        carry, _, _ = engine.chunk(carry, np.int32(i), np.ones(1, bool), due)
    _, _, test = engine.chunk(carry, np.int32(60), np.zeros(1, bool), np.ones(1, bool))
    assert float(test["test_return_mean"][0]) == 10.0


def test_time_buckets_cut_only_padding(make_cfg):
    """An update on episodes padded far past their end equals one on the cut batch."""
    cfg = make_cfg("algo=qmix", "env=matrix_three_state")
    env = MatrixGame("padded", matrix.THREE_STATE_PAYOFF, episode_limit=10)
    algo = algos.build("qmix", env.spec, cfg)
    engine = Engine(env, algo, EngineConfig.from_cfg(cfg))
    assert engine.bucket_lengths() == [10]  # a fixed-length game: one update length
    free = MatrixGame("free", matrix.THREE_STATE_PAYOFF, episode_limit=10)
    free.spec = dataclasses.replace(free.spec, fixed_length=False)  # as if episodes could end early
    assert Engine(free, algo, engine.cfg).bucket_lengths() == [3, 5, 8, 10]
    ts = algo.init(jax.random.PRNGKey(0))
    batch, _ = run_episodes(env, algo, ts, jax.random.PRNGKey(1), 16, 0, False)

    def pad(x, extra):  # 7 more steps of padding (mask false) after every episode
        widths = [(0, 0), (0, extra)] + [(0, 0)] * (x.ndim - 2)
        return jnp.pad(x, widths)

    padded = jax.tree.map(lambda x: pad(x, 7), batch)
    assert padded.mask.shape == (16, 17) and padded.truncate(10).mask.shape == (16, 10)
    full, m_full = jax.jit(algo.update)(ts, padded, jax.random.PRNGKey(2), update_ctx())
    cut, m_cut = jax.jit(algo.update)(ts, padded.truncate(10), jax.random.PRNGKey(2), update_ctx())
    np.testing.assert_allclose(m_full["loss"], m_cut["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(cut.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_learners_for_many_agents_and_actions_build_without_a_joint_action_table():
    """smax_corridor has 29**6 joint actions: building a learner must not enumerate them
    (only matrix-game Q tables do, when traced), and asking for them says why not."""
    from jlmarl.algos.q_learning import all_joint_actions
    from jlmarl.config import load_config
    from jlmarl.envs.base import EnvSpec

    spec = EnvSpec("wide", n_agents=6, obs_dim=4, state_dim=5, n_actions=29, episode_limit=3, info_keys=())
    for name in ("iql", "vdn", "qmix", "limarl", "lsf_sac", "masac"):
        cfg = load_config([f"algo={name}", "env=matrix_one_step"])
        algo = algos.build(name, spec, cfg)
        assert algo.name == name
    with pytest.raises(ValueError, match="matrix games"):
        all_joint_actions(6, 29)
    assert all_joint_actions(2, 3).shape == (9, 2)


def test_a_frozen_seed_leaves_the_chunk_exactly_as_it_entered(make_cfg):
    """A seed at its budget is frozen while the others train on (train mask false): its
    params, optimiser, buffer, keys and counters do not move, and the seed still training
    gets the numbers it gets when no seed is frozen."""
    cfg = make_cfg("algo=vdn", "env=matrix_three_state", "num_envs=8", "batch_size=8", "buffer_size=32")
    env = MatrixGame("three", matrix.THREE_STATE_PAYOFF, episode_limit=10)
    engine = Engine(env, algos.build("vdn", env.spec, cfg), EngineConfig.from_cfg(cfg))
    no_eval, both = np.zeros(2, bool), np.ones(2, bool)
    carry = engine.init(engine.seed_keys([0, 1]))
    carry, _, _ = engine.chunk(carry, np.int32(0), both, no_eval)  # the buffers can now be sampled
    twin = jax.tree.map(jnp.copy, carry)
    entered = jax.device_get(carry)  # host copies: the chunk donates its carry
    frozen, metrics, _ = engine.chunk(carry, np.int32(1), np.array([True, False]), no_eval)
    trained, _, _ = engine.chunk(twin, np.int32(1), both, no_eval)
    frozen, trained = jax.device_get((frozen, trained))
    for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(entered), strict=True):
        np.testing.assert_array_equal(a[1], b[1])  # seed 1: bit for bit as it entered
    assert int(frozen.buffer.size[0]) == 16 and int(frozen.env_steps[0]) == 160  # seed 0 went on
    assert int(frozen.updates[0]) == int(entered.updates[0]) + engine.cfg.updates_per_chunk
    assert metrics["trained"].tolist() == [1.0, 0.0]
    for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(trained), strict=True):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)  # seed 0 as if none froze


def test_the_chunk_writes_the_replay_buffer_in_place(make_cfg):
    """The compiled chunk must not copy the replay buffer: XLA copies an operand that a
    lax.cond branch updates in place (in and out), which made every chunk of a default
    run (buffer_size 5000) copy the whole buffer twice. Read from the optimised program:
    no copy instruction has the buffer's leading [seeds, capacity] axes."""
    capacity = 4099  # a size no other array of this run has
    cfg = make_cfg("algo=vdn", "env=matrix_three_state", "batch_size=8", f"buffer_size={capacity}")
    env = MatrixGame("three", matrix.THREE_STATE_PAYOFF, episode_limit=10)
    engine = Engine(env, algos.build("vdn", env.spec, cfg), EngineConfig.from_cfg(cfg))
    carry = engine.init(engine.seed_keys([0]))
    due = np.zeros(1, bool)
    hlo = engine.chunk.lower(carry, np.int32(0), ~due, due).compile().as_text()
    ops = re.findall(rf"= \S+\[1,{capacity},[^\]]*\]\S* ([a-z-]+)\(", hlo)
    assert "scatter" in ops  # the buffer's fields are written (one scatter each)
    assert "copy" not in ops
