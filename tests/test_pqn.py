"""PQN: Q(lambda) targets by hand, segments from persistent auto-resetting envs through
the engine (no buffer), and decentralised acting."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_cli import train

from jlmarl import algos
from jlmarl.algos.pqn import lr_fraction, q_lambda_loss
from jlmarl.analysis.runs import load_run
from jlmarl.config import ConfigError
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.core.engine import Engine, EngineConfig
from jlmarl.core.rollout import init_stream, run_segment
from jlmarl.nets.agents import segment_inputs
from tests.helpers import Visible, counting_algo

TINY = [
    "env=matrix_three_state",
    "num_envs=4",
    "pqn.minibatches=2",
    "pqn.segment_length=5",
    "algo.hidden_dim=8",
]


def test_q_lambda_targets_by_hand_cut_at_episode_ends_and_bootstrap_at_the_segment_end():
    # one env, one agent, 4 steps; an episode ends after step 1 (terminal or truncation alike)
    best = jnp.array([0.5, 1.5, 2.5, 3.5, 4.5])  # max_a Q at observations 0..4
    q_all = jnp.stack([best, best - 1.0], -1)[None, :, None]  # [B=1, T+1=5, n=1, A=2]
    batch = EpisodeBatch(
        obs=jnp.zeros((1, 5, 1, 1)),
        state=jnp.zeros((1, 5, 1)),
        avail=jnp.ones((1, 5, 1, 2), bool),
        actions=jnp.zeros((1, 4, 1), jnp.int32),
        reward=jnp.array([[1.0, 2.0, 3.0, 4.0]]),
        terminated=jnp.array([[False, True, False, False]]),
        mask=jnp.ones((1, 4), bool),
    )
    gamma, lam = 0.5, 0.5
    vdn = lambda q: q.sum(-1)  # noqa: E731
    loss, aux = q_lambda_loss(q_all, batch.avail, batch, vdn, vdn, gamma, lam)
    g3 = 4 + gamma * 4.5  # the segment's last step bootstraps from the observation after it
    g2 = 3 + gamma * (lam * g3 + (1 - lam) * 3.5)
    g1 = 2.0  # the episode ended: no bootstrap, and nothing from the next episode
    g0 = 1 + gamma * (lam * g1 + (1 - lam) * 1.5)
    targets = np.array([g0, g1, g2, g3])
    np.testing.assert_allclose(aux["target_mean"], targets.mean(), rtol=1e-6)
    np.testing.assert_allclose(loss, ((best[:4] - targets) ** 2).mean(), rtol=1e-6)


def test_segments_continue_episodes_across_chunks_and_mark_their_starts():
    env = Visible()  # 3-step episodes, truncated
    algo = counting_algo(env.spec, replay=False)
    stream = init_stream(env, algo, jax.random.PRNGKey(0), 2)
    stream, first, m1 = run_segment(env, algo, 0, stream, jax.random.PRNGKey(1), 2, 0)
    stream, second, m2 = run_segment(env, algo, 0, stream, jax.random.PRNGKey(2), 2, 0)
    np.testing.assert_array_equal(first.resets[0], [True, False, False])
    np.testing.assert_array_equal(first.terminated[0], [False, False])
    np.testing.assert_array_equal(second.resets[0], [False, True, False])  # step 3 ended the episode
    np.testing.assert_array_equal(second.terminated[0], [True, False])  # the truncation cuts the chain
    assert float(m1["episodes_finished"]) == 0 and float(m2["episodes_finished"]) == 2
    np.testing.assert_allclose(m2["return_mean"], 3.0)  # reward 1 per step, 3 steps
    inputs = segment_inputs(second.obs, second.actions, second.resets, jnp.full((2, 2), 1), 2)
    np.testing.assert_array_equal(inputs[0, 0, 0, 1:3], [0, 1])  # last action carried in
    np.testing.assert_array_equal(inputs[0, 1, 0, 1:3], [0, 0])  # none at the episode start


def test_pqn_runs_through_the_engine_without_a_buffer(make_cfg):
    cfg = make_cfg("algo=pqn_vdn", *TINY)
    from jlmarl.train import build

    engine = build(cfg)
    assert engine.algo.segment_length == 5 and not engine.algo.replay
    carry = engine.init(engine.seed_keys([0]))
    assert carry.buffer is None and carry.stream is not None
    carry, metrics, _ = engine.chunk(carry, np.int32(0), np.ones(1, bool), np.zeros(1, bool))
    assert int(carry.env_steps[0]) == 4 * 5  # num_envs x segment_length real steps
    assert int(carry.train_state.updates[0]) == 1
    assert np.isfinite(metrics["loss"]).all() and float(metrics["lr_fraction"][0]) > 0.99
    with pytest.raises(ConfigError, match="pqn.minibatches=3 must divide num_envs=4"):
        make_cfg("algo=pqn_vdn", *TINY, "pqn.minibatches=3")


def test_evaluations_land_in_the_interval_they_were_due_for(tmp_path):
    # Chunks of 4 envs x 5 steps = 20 env steps; test_interval 30 is not a multiple of it.
    # Deciding before a chunk from the steps before it evaluated at 20, 60, 100, ...:
    # the interval from 30 had none, and compare refused the run beside a replay learner.
    run = tmp_path / "p"
    result = train(
        "algo=pqn_vdn", *TINY, "total_steps=300", "test_interval=30", "test_episodes=2",
        "progress=false", "plot=false", f"run_dir={run}", f"compile_cache={tmp_path / 'cache'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(load_run(run).steps, np.arange(0, 301, 30))


def test_acting_is_decentralised(make_cfg):
    cfg = make_cfg("algo=pqn_qmix", *TINY)
    from jlmarl.envs.matrix import matrix_three_state

    algo = algos.build("pqn_qmix", matrix_three_state().spec, cfg)
    ts = algo.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (16, 2, 1))
    avail = jnp.ones((16, 2, 3), bool)
    act = jax.jit(algo.act, static_argnums=6)
    base, _ = act(ts, algo.init_actor(16), obs, avail, jax.random.PRNGKey(2), 0, True)
    other, _ = act(ts, algo.init_actor(16), obs.at[:, 1].add(5.0), avail, jax.random.PRNGKey(2), 0, True)
    np.testing.assert_array_equal(base[:, 0], other[:, 0])  # agent 0 sees only its own observation
    assert not np.array_equal(base[:, 1], other[:, 1])  # the test can see a difference


def test_learning_rate_decays_linearly_to_zero():
    np.testing.assert_allclose([lr_fraction(jnp.float32(s), 100) for s in (0, 25, 100, 150)], [1, 0.75, 0, 0])
    assert float(lr_fraction(jnp.float32(10**9), 0)) == 1.0


def test_segment_learners_refuse_replay():
    env = Visible()
    algo = dataclasses.replace(counting_algo(env.spec, replay=True), segment_length=3)
    with pytest.raises(ValueError, match="must be on-policy"):
        Engine(env, algo, EngineConfig(2, 4, 2, 1, 10, 1))
