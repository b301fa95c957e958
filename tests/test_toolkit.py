"""The learner toolkit's contract: the double-Q TD(lambda) loss by hand, the extras
channel from env to buffer, on-policy learners without a buffer, the newest episodes
of the buffer, the clock and phases an update is told, KL helpers by hand."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jlmarl.algos.q_learning import RecurrentActor, double_q_td_loss, init_recurrent_actor
from jlmarl.core.algo import Phase
from jlmarl.core.buffer import EpisodeBatch, buffer_add, buffer_init, buffer_recent, episode_nbytes
from jlmarl.core.engine import Engine, EngineConfig
from jlmarl.envs.base import EnvSpec, Timestep, make_timestep
from jlmarl.nets.gaussian import kl_balanced, kl_diag, kl_std_normal
from tests.helpers import Visible, counting_algo


def test_double_q_td_lambda_loss_through_a_mixer_by_hand():
    """B=1, T=2, n=2, A=2. The mixer adds its input to the sum of utilities, so the
    loss must read mixer_inputs (not the batch's state, which is garbage here)."""
    q_all = jnp.array([[[[1, 2], [3, 0]], [[0, 5], [2, 1]], [[4, 1], [0, 3]]]], jnp.float32)
    q_target = jnp.array([[[[10, 20], [30, 40]], [[1, 2], [3, 4]], [[5, 6], [7, 8]]]], jnp.float32)
    avail = jnp.ones((1, 3, 2, 2), bool).at[0, 2, 1, 1].set(False)
    batch = EpisodeBatch(
        obs=jnp.zeros((1, 3, 2, 1)),
        state=jnp.full((1, 3, 1), 1e6),
        avail=avail,
        actions=jnp.array([[[0, 1], [1, 1]]], jnp.int32),
        reward=jnp.array([[1.0, 2.0]]),
        terminated=jnp.array([[False, True]]),
        mask=jnp.array([[True, True]]),
    )
    inputs = jnp.array([[[0.1], [0.2], [0.3]]])
    mix = lambda qs, m: qs.sum(-1) + m[..., 0]  # noqa: E731
    loss, aux = double_q_td_loss(q_all, q_target, batch, inputs, mix, mix, gamma=0.5, lam=0.5)
    # greedy next actions (online, available only): t1 (1, 0); t2 (0, 0) since agent 1's
    # action 1 is unavailable. Target mix at t1: 2 + 3 + 0.2 = 5.2.
    # G_1 = r_1 = 2 (terminal); G_0 = 1 + 0.5 (0.5 * 2 + 0.5 * 5.2) = 2.8.
    # Chosen: t0 1 + 0 + 0.1 = 1.1; t1 5 + 1 + 0.2 = 6.2 -> errors -1.7, 4.2.
    np.testing.assert_allclose(aux["target_mean"], (2.8 + 2.0) / 2, rtol=1e-6)
    np.testing.assert_allclose(aux["q_taken_mean"], (1.1 + 6.2) / 2, rtol=1e-6)
    np.testing.assert_allclose(loss, (1.7**2 + 4.2**2) / 2, rtol=1e-6)
    # a truncated (not terminated) last step bootstraps from the target mix at t2:
    # 5 + 7 + 0.3 = 12.3 -> G_1 = 2 + 0.5 * 12.3 = 8.15
    cut = batch.replace(terminated=jnp.array([[False, False]]))
    _, aux = double_q_td_loss(q_all, q_target, cut, inputs, mix, mix, gamma=0.5, lam=0.5)
    g1 = 2 + 0.5 * 12.3
    np.testing.assert_allclose(aux["target_mean"], (1 + 0.5 * (0.5 * g1 + 0.5 * 5.2) + g1) / 2, rtol=1e-6)


def test_kl_helpers_by_hand():
    mu_q, lv_q = jnp.array([1.0, 0.0]), jnp.log(jnp.array([4.0, 1.0]))
    mu_p, lv_p = jnp.array([0.0, 2.0]), jnp.log(jnp.array([1.0, 4.0]))
    # per dim: 0.5 log(s_p/s_q) + (s_q + d^2) / (2 s_p) - 0.5
    dim0 = 0.5 * np.log(1 / 4) + (4 + 1) / 2 - 0.5
    dim1 = 0.5 * np.log(4 / 1) + (1 + 4) / 8 - 0.5
    np.testing.assert_allclose(kl_diag(mu_q, lv_q, mu_p, lv_p), dim0 + dim1, rtol=1e-6)
    np.testing.assert_allclose(kl_std_normal(mu_q, lv_q), 0.5 * (4 + 1 - 1 - np.log(4)) + 0.0, rtol=1e-6)
    np.testing.assert_allclose(kl_std_normal(jnp.array([3.0, 4.0])), 12.5, rtol=1e-6)


def test_kl_balancing_weighs_the_posterior_and_prior_gradients_by_alpha():
    """Value = KL; d/d(posterior) = alpha dKL/d(posterior), d/d(prior) = (1 - alpha) dKL/d(prior)."""
    args = (jnp.array([0.5, -1.0]), jnp.array([0.2, -0.3]), jnp.array([0.0, 1.0]), jnp.array([0.1, 0.4]))
    alpha = 0.8
    np.testing.assert_allclose(kl_balanced(*args, alpha), kl_diag(*args), rtol=1e-6)
    full = jax.grad(lambda a: kl_diag(*a))(args)
    bal = jax.grad(lambda a: kl_balanced(*a, alpha))(args)
    for i, w in enumerate((alpha, alpha, 1 - alpha, 1 - alpha)):
        np.testing.assert_allclose(bal[i], w * full[i], rtol=1e-6)


def test_env_extras_are_checked_recorded_and_stored():
    env = Visible()
    with pytest.raises(ValueError, match="extra seen has shape"):
        make_timestep(
            env.spec, jnp.zeros((2, 1)), jnp.zeros(1), jnp.ones((2, 2)), extras={"seen": jnp.zeros(3)}
        )
    with pytest.raises(ValueError, match="differ from EnvSpec.extras"):
        make_timestep(env.spec, jnp.zeros((2, 1)), jnp.zeros(1), jnp.ones((2, 2)))
    plain = dataclasses.replace(env.spec, extras=())
    assert episode_nbytes(env.spec) - episode_nbytes(plain) == 4 * 4  # T+1 = 4 steps x 2x2 bools
    algo = counting_algo(env.spec, replay=True)
    engine = Engine(env, algo, EngineConfig(4, 8, 4, 1, 100, 2))
    carry = engine.init(engine.seed_keys([0]))
    assert carry.buffer.data.extras["seen"].shape == (1, 8, 4, 2, 2)
    carry, _, _ = engine.chunk(carry, np.int32(0), np.ones(1, bool), np.zeros(1, bool))
    seen = np.asarray(carry.buffer.data.extras["seen"][0, :4])  # [episode, t, 2, 2]
    odd = np.array([False, True, False, True])
    np.testing.assert_array_equal(seen[:, :, 0, 1], np.broadcast_to(odd, (4, 4)))
    np.testing.assert_array_equal(seen[:, :, 0, 0], True)


def test_on_policy_algo_gets_no_buffer_and_updates_on_the_fresh_episodes():
    env = Visible()
    engine = Engine(env, counting_algo(env.spec, replay=False), EngineConfig(5, 8, 4, 1, 100, 2))
    carry = engine.init(engine.seed_keys([0, 1]))
    assert carry.buffer is None
    assert engine.metric_names == ("batch_episodes", "batch_steps", "env_steps", "phase", "updates")
    carry, m, _ = engine.chunk(carry, np.int32(0), np.ones(2, bool), np.zeros(2, bool))
    np.testing.assert_array_equal(m["batch_episodes"], [5, 5])  # num_envs, not batch_size
    np.testing.assert_array_equal(m["batch_steps"], [15, 15])  # 5 whole 3-step episodes
    np.testing.assert_array_equal(m["env_steps"], [15, 15])  # the clock after collecting them
    np.testing.assert_array_equal(carry.train_state, [1, 1])


def test_phases_are_scheduled_by_update_calls_and_the_newest_episodes_are_handed_over():
    env = Visible()
    algo = counting_algo(env.spec, replay=True, phases=(Phase("warm", 6), Phase("more", 2)), recent=3)
    # 2 updates per chunk (4 envs, 2 episodes per update); warm = 3 calls, more = 1 call
    engine = Engine(env, algo, EngineConfig(4, 16, 4, 2, 100, 2, episodes_per_update=2))
    assert engine.phase_ends() == [3, 4]
    carry = engine.init(engine.seed_keys([0]))
    phases, updates = [], []
    for i in range(3):
        carry, m, _ = engine.chunk(carry, np.int32(i), np.ones(1, bool), np.zeros(1, bool))
        phases.append(float(m["phase"][0]))  # the chunk's mean over its 2 updates
        updates.append(float(m["updates"][0]))
        # the 3 newest episodes are whole 3-step episodes with reward 1 per step
        np.testing.assert_allclose(m["recent_reward"], 9.0)
    assert phases == [0.0, 0.5, 2.0] and updates == [0.5, 2.5, 4.5]


def test_buffer_recent_is_the_newest_episodes_oldest_first():
    spec = EnvSpec("toy", 1, 1, 1, 2, episode_limit=2)
    buf = buffer_init(spec, 4)
    ids = lambda xs: EpisodeBatch(  # noqa: E731
        obs=jnp.zeros((len(xs), 3, 1, 1)),
        state=jnp.zeros((len(xs), 3, 1)),
        avail=jnp.ones((len(xs), 3, 1, 2), bool),
        actions=jnp.zeros((len(xs), 2, 1), jnp.int32),
        reward=jnp.asarray(xs, jnp.float32)[:, None].repeat(2, 1),
        terminated=jnp.zeros((len(xs), 2), bool),
        mask=jnp.ones((len(xs), 2), bool),
    )
    buf = buffer_add(buf, ids([1, 2, 3]))
    np.testing.assert_array_equal(buffer_recent(buf, 2).reward[:, 0], [2, 3])
    buf = buffer_add(buf, ids([4, 5]))  # 5 overwrites slot 0
    np.testing.assert_array_equal(buffer_recent(buf, 3).reward[:, 0], [3, 4, 5])


def test_recurrent_actor_starts_empty():
    actor = init_recurrent_actor(3, 2, 5)
    assert isinstance(actor, RecurrentActor) and actor.hidden.shape == (3, 2, 5)
    np.testing.assert_array_equal(actor.last_action, -1)
    assert isinstance(Timestep, type)


def test_imagination_scan_rollout_feature_and_mixer_inputs():
    from jlmarl.nets.world_model import imagine, mixer_inputs, rollout_feature

    def step(x):  # a "model" that doubles its latent
        return 2.0 * x, 2.0 * x

    start = jnp.ones((4, 3, 2))  # [B, T+1, D]
    for horizon in (1, 10):
        imagined = imagine(step, start, horizon)
        assert imagined.shape == (horizon, 4, 3, 2)
        np.testing.assert_allclose(imagined[-1], 2.0**horizon)
    feature = rollout_feature(start, imagine(step, start, 3))
    assert feature.shape == (4, 3, 8)
    np.testing.assert_allclose(feature[0, 0], [1, 1, 2, 2, 4, 4, 8, 8])
    state = jnp.zeros((4, 3, 5))
    assert mixer_inputs(state, feature).shape == (4, 3, 13)
    assert mixer_inputs(state, feature, global_state=False).shape == (4, 3, 8)
    grad = jax.grad(lambda f: mixer_inputs(state, f).sum())(feature)
    assert float(jnp.abs(grad).sum()) == 0.0  # the mixer cannot train the model


def test_prediction_errors_by_hand():
    from jlmarl.nets.world_model import prediction_errors

    real = jnp.array([[[0.0], [1.0], [2.0], [9.0]]])  # [B=1, T=4, D=1]; step 3 is padding
    valid = jnp.array([[True, True, True, False]])
    predicted = jnp.array([[[[1.0], [2.5], [2.0], [0.0]]], [[[2.0], [0.0], [0.0], [0.0]]]])  # [K=2, ...]
    out = prediction_errors(predicted, real, valid)
    # k = 1: pairs (0,1), (1,2): model errors (1-1)^2, (2.5-2)^2; still (0-1)^2, (1-2)^2
    np.testing.assert_allclose(out["model_1"], 0.125, rtol=1e-6)
    np.testing.assert_allclose(out["still_1"], 1.0, rtol=1e-6)
    # k = 2: pair (0,2) only: model (2-2)^2 = 0, still (0-2)^2 = 4
    np.testing.assert_allclose(out["model_2"], 0.0, atol=1e-7)
    np.testing.assert_allclose(out["still_2"], 4.0, rtol=1e-6)
    # the best constant: k = 1 targets 1, 2 (mean 1.5, error 0.25 each); k = 2 one target, 0
    np.testing.assert_allclose(out["mean_1"], 0.25, rtol=1e-6)
    np.testing.assert_allclose(out["mean_2"], 0.0, atol=1e-7)


def test_compile_cache_folder_for_each_setting(monkeypatch, tmp_path):
    from pathlib import Path

    from jlmarl.core.compile_cache import cache_dir

    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    assert cache_dir("default") == Path("~/.cache/jlmarl/jax").expanduser() == cache_dir(True)
    assert cache_dir(False) is None
    assert cache_dir(str(tmp_path)) == tmp_path
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "env"))
    assert cache_dir("default") == tmp_path / "env"


def test_fixed_length_envs_compile_one_update_length():
    from jlmarl.envs.matrix import matrix_three_state

    env = matrix_three_state()
    assert env.spec.fixed_length
    algo = counting_algo(env.spec, replay=True)
    assert Engine(env, algo, EngineConfig(4, 8, 4, 1, 100, 2, time_buckets=4)).bucket_lengths() == [10]
    free = Visible()  # not declared fixed: 3 buckets of a 3-step limit
    assert Engine(free, algo, EngineConfig(4, 8, 4, 1, 100, 2, time_buckets=4)).bucket_lengths() == [1, 2, 3]
