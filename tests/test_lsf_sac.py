"""LSF-SAC / MASAC: the pieces of the losses on hand cases, decentralised acting, and
that every variant's update runs and moves the temperature the right way."""

from __future__ import annotations

import functools

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jlmarl import algos, envs
from jlmarl.algos import lsf_sac
from jlmarl.algos.lsf_sac import entropy, masked_policy, message_loss, soft_value, temperature_loss
from jlmarl.config import ConfigError, load_config
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.core.rollout import run_episodes
from jlmarl.envs import matrix
from jlmarl.nets.gaussian import kl_std_normal
from jlmarl.nets.message_critic import incoming_messages
from tests.helpers import update_ctx

TINY_NETS = ["algo.hidden_dim=8", "algo.mixing_embed_dim=4", "algo.hypernet_embed=8"]
# Each program runs once on tiny inputs: spend little time optimising it (as tests/test_envs.py).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def run_once(fn, *args):
    lowered = jax.jit(fn).lower(*args)
    try:
        compiled = lowered.compile(compiler_options=FAST_COMPILE)
    except jax.errors.JaxRuntimeError:  # an XLA without these options
        compiled = lowered.compile()
    return compiled(*args)


@functools.cache
def built(name: str, *overrides: str):
    cfg = load_config(
        [f"algo={name}", "env=matrix_three_state", "run_dir=/tmp/unused", *TINY_NETS, *overrides]
    )
    env = matrix.matrix_three_state()
    return env, algos.build(name, env.spec, cfg)


def episodes(env, algo, ts, n=4, seed=0):
    rollout = lambda ts, key: run_episodes(env, algo, ts, key, n, jnp.int32(0), False)[0]  # noqa: E731
    return run_once(rollout, ts, jax.random.key(seed))


# --- loss pieces on hand cases -------------------------------------------------------------------


def test_unavailable_actions_get_zero_probability():
    logits = jnp.array([[1.0, 2.0, 3.0], [5.0, -1.0, 0.5]])
    avail = jnp.array([[True, True, False], [False, True, True]])
    probs, logp = masked_policy(logits, avail)
    np.testing.assert_array_equal(np.asarray(probs)[~np.asarray(avail)], 0.0)
    e = np.exp([1.0, 2.0])
    np.testing.assert_allclose(probs[0], [e[0] / e.sum(), e[1] / e.sum(), 0.0], rtol=1e-6)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(logp[1, 1:], np.log(probs[1, 1:]), rtol=1e-5)


def test_soft_value_hand_case():
    # pi = (0.5, 0.5, 0) over q = (2, 4, 100) (the third action unavailable), alpha = 0.1:
    # V = 0.5 (2 - 0.1 log 0.5) + 0.5 (4 - 0.1 log 0.5) = 3 + 0.1 log 2.
    probs, logp = masked_policy(jnp.zeros(3), jnp.array([True, True, False]))
    v = soft_value(probs, logp, jnp.array([2.0, 4.0, 100.0]), 0.1)
    np.testing.assert_allclose(float(v), 3.0 + 0.1 * np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(float(entropy(probs, logp)), np.log(2.0), rtol=1e-6)


@pytest.mark.parametrize("h, sign", [(0.2, -1.0), (0.9, 1.0)])
def test_temperature_gradient_sign(h, sign):
    # Target entropy 0.5: below it the gradient in log alpha is negative, so alpha rises.
    grad = jax.grad(temperature_loss)(jnp.log(0.3), jnp.array([h]), jnp.array([0.5]), jnp.ones(1))
    assert np.sign(float(grad)) == sign
    np.testing.assert_allclose(float(grad), 0.3 * (h - 0.5), rtol=1e-5)


def test_message_kl_matches_the_gaussian_closed_form():
    mean = jnp.array([[0.3, -1.2, 2.0], [0.0, 0.0, 0.5]])
    ref = distrax.MultivariateNormalDiag(mean, jnp.ones(3)).kl_divergence(
        distrax.MultivariateNormalDiag(jnp.zeros(3), jnp.ones(3))
    )
    np.testing.assert_allclose(kl_std_normal(mean), ref, rtol=1e-5)
    np.testing.assert_allclose(kl_std_normal(mean), 0.5 * (mean**2).sum(-1), rtol=1e-6)


def test_incoming_messages_hold_the_others_in_agent_order():
    m = jnp.arange(6.0).reshape(3, 2) + 1.0  # agent j's message = row j
    pooled = np.asarray(incoming_messages(m))
    np.testing.assert_array_equal(pooled[0], [0, 0, 3, 4, 5, 6])
    np.testing.assert_array_equal(pooled[1], [1, 2, 0, 0, 5, 6])
    np.testing.assert_array_equal(pooled[2], [1, 2, 3, 4, 0, 0])


def test_message_target_is_the_critics_boltzmann_distribution_held_fixed():
    # q = (1, 2, 9) with the third action unavailable, alpha = 0.5: the target is
    # softmax(2, 4) = (p, 1 - p), p = 1 / (1 + e^2). Predicted logits (1, 0, 5): log q_psi =
    # (1 - log(e + 1), -log(e + 1)). CE = log(e + 1) - p; + beta KL(N((0.3, -0.4), I) || N(0, I))
    # = 0.1 x 0.5 (0.09 + 0.16).
    q = jnp.array([[1.0, 2.0, 9.0]])
    avail = jnp.array([[True, True, False]])
    pred, means = jnp.array([[1.0, 0.0, 5.0]]), jnp.array([[0.3, -0.4]])
    p = 1.0 / (1.0 + np.e**2)
    by_hand = np.log(np.e + 1.0) - p + 0.1 * 0.5 * (0.09 + 0.16)
    loss = message_loss(q, jnp.float32(0.5), pred, means, avail, jnp.ones(1), 0.1)
    np.testing.assert_allclose(float(loss), by_hand, rtol=1e-6)
    dq, dalpha = jax.grad(message_loss, argnums=(0, 1))(
        q, jnp.float32(0.5), pred, means, avail, jnp.ones(1), 0.1
    )
    assert float(jnp.abs(dq).max()) == 0.0 and float(dalpha) == 0.0  # the target is held fixed


def _message_nets():
    from jlmarl.nets.mlp import MLP

    return MLP((16, 3)), MLP((16, 3))  # encoder f_m -> 3-dim messages, predictor q_psi -> 3 logits


def test_the_message_encoder_gets_a_gradient_from_the_message_loss():
    """beta = 0: the only path from L_m to the encoder is the messages the predictor reads."""
    encoder, predictor = _message_nets()
    feats = jax.random.normal(jax.random.key(0), (8, 2, 4))  # [B, n, H]
    q = jax.random.normal(jax.random.key(1), (8, 2, 3)) * 3.0
    enc = encoder.init(jax.random.key(2), feats)
    pred = predictor.init(jax.random.key(3), jnp.zeros((1, 4 + 2 * 3)))

    def loss(enc_params):
        means = encoder.apply(enc_params, feats)
        logits = predictor.apply(pred, jnp.concatenate([feats, incoming_messages(means)], -1))
        return message_loss(
            q, jnp.float32(1.0), logits, means, jnp.ones((8, 2, 3), bool), jnp.ones((8, 2)), 0.0
        )

    grads = jax.grad(loss)(enc)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)) > 0.0


def test_messages_carrying_the_partners_next_action_lower_the_message_loss():
    """Agent j's critic values the action its partner will take (q_j = 3 onehot(b)), which j's
    own history does not show. A predictor that reads a message with b reaches the target's
    entropy (by hand 0.367: p = (e^3, 1, 1) / (e^3 + 2)); one that reads an empty message can
    do no better than the mixture's cross-entropy (log 3 = 1.099)."""
    _, predictor = _message_nets()
    b = jax.random.randint(jax.random.key(0), (512, 2), 0, 3)  # each agent's next action
    partner = b[:, ::-1]
    q = 3.0 * jax.nn.one_hot(partner, 3)  # [B, n, A]
    feats = jnp.zeros((512, 2, 4))
    avail, weight = jnp.ones((512, 2, 3), bool), jnp.ones((512, 2))
    params0 = predictor.init(jax.random.key(1), jnp.zeros((1, 4 + 2 * 3)))
    opt = optax.adam(3e-2)

    def trained_loss(messages):
        incoming = incoming_messages(messages)

        def loss(p):
            logits = predictor.apply(p, jnp.concatenate([feats, incoming], -1))
            return message_loss(q, jnp.float32(1.0), logits, messages, avail, weight, 0.0)

        def step(carry, _):
            p, o = carry
            upd, o = opt.update(jax.grad(loss)(p), o, p)
            return (optax.apply_updates(p, upd), o), None

        (p, _), _ = jax.lax.scan(step, (params0, opt.init(params0)), length=300)
        return float(loss(p))

    with_action = trained_loss(jax.nn.one_hot(b, 3))  # agent i's message: its own next action
    empty = trained_loss(jnp.zeros((512, 2, 3)))
    target_entropy = -(
        np.array([np.e**3, 1, 1]) / (np.e**3 + 2) * np.log(np.array([np.e**3, 1, 1]) / (np.e**3 + 2))
    ).sum()
    assert with_action < target_entropy + 0.1 and empty > np.log(3.0) - 0.05, (with_action, empty)


def test_target_entropy_is_rho_log_of_each_agents_available_actions_at_each_step():
    # rho = 0.5; at the one step agent 0 has 2 of 3 actions available, agent 1 all 3:
    # H_0 = (0.5 log 2, 0.5 log 3). The final observation's avail (one action) is no step's.
    cfg = load_config(["algo=lsf_sac", "env=matrix_three_state", "run_dir=/tmp/unused", *TINY_NETS])
    s = lsf_sac.Settings.from_cfg(cfg.algo, cfg.lsf_sac, messages=True)
    nets = lsf_sac.make_nets(matrix.matrix_three_state().spec, cfg.algo, s)
    step_avail = jnp.array([[True, True, False], [True, True, True]])
    last_avail = jnp.array([[False, False, True], [False, False, True]])
    batch = EpisodeBatch(
        obs=jnp.zeros((1, 2, 2, 1)),
        state=jnp.zeros((1, 2, 2)),
        avail=jnp.stack([step_avail, last_avail])[None],
        actions=jnp.zeros((1, 1, 2), jnp.int32),
        reward=jnp.zeros((1, 1)),
        terminated=jnp.array([[True]]),
        mask=jnp.array([[True]]),
    )
    x = lsf_sac.loss_inputs(nets, s, batch, jax.random.key(0))
    np.testing.assert_allclose(x.target_entropy, [[[0.5 * np.log(2.0), 0.5 * np.log(3.0)]]], rtol=1e-6)


# --- decentralised execution ---------------------------------------------------------------------


def test_acting_uses_the_actors_only():
    env, algo = built("lsf_sac")
    ts = algo.init(jax.random.key(0))
    _, first = jax.vmap(env.reset)(jax.random.split(jax.random.key(1), 5))
    actor_state, key = algo.init_actor(5), jax.random.key(2)
    actor_only = ts.replace(params={"actor": ts.params["actor"]}, target_params=None, opt_state=None)
    for greedy in (True, False):
        act = jax.jit(
            lambda ts, greedy=greedy: algo.act(ts, actor_state, first.obs, first.avail, key, 0, greedy)[0]
        )
        np.testing.assert_array_equal(act(ts), act(actor_only))


class _ScrambledState:
    """matrix_three_state with a different global state vector (obs, avail and rewards unchanged)."""

    def __init__(self, env):
        self.env, self.spec = env, env.spec

    def _scramble(self, ts):
        return ts.replace(state=ts.state[::-1] * 7.0 - 3.0)

    def reset(self, key):
        s, ts = self.env.reset(key)
        return s, self._scramble(ts)

    def step(self, key, s, actions):
        s, ts = self.env.step(key, s, actions)
        return s, self._scramble(ts)


def test_changing_the_state_does_not_change_actions():
    env, algo = built("lsf_sac")
    ts = algo.init(jax.random.key(0))
    a = episodes(env, algo, ts, n=6)
    b = episodes(_ScrambledState(env), algo, ts, n=6)
    assert not np.array_equal(a.state, b.state)
    np.testing.assert_array_equal(a.actions, b.actions)


def test_sampled_actions_are_available_and_greedy_is_the_policy_argmax():
    env, algo = built("masac")
    ts = algo.init(jax.random.key(0))
    obs = jnp.ones((256, 2, 1))
    avail = jnp.broadcast_to(jnp.array([[True, False, True], [False, True, False]]), (256, 2, 3))
    act = jax.jit(algo.act, static_argnums=6)
    actions, _ = act(ts, algo.init_actor(256), obs, avail, jax.random.key(3), 0, False)
    assert np.take_along_axis(np.asarray(avail), np.asarray(actions)[..., None], -1).all()
    assert set(np.unique(actions[:, 0])) == {0, 2}  # both available actions get sampled
    greedy, _ = act(ts, algo.init_actor(256), obs, avail, jax.random.key(3), 0, True)
    assert (np.asarray(greedy[:, 1]) == 1).all()


# --- updates -------------------------------------------------------------------------------------


def test_update_vmapped_over_seeds_with_three_agents_runs():
    """Seed sweeps vmap the update. With 3 agents, messages of size 3 and 100 rows, the
    pooled messages' first form made XLA's CPU program segfault here (jax 0.10.2)."""
    spec = envs.make("lbf_2s_10x10_3p_3f").spec
    cfg = load_config(["algo=lsf_sac", "env=lbf_2s_10x10_3p_3f", "run_dir=/tmp/unused", *TINY_NETS])
    algo = algos.build("lsf_sac", spec, cfg)
    seeds, b, t, n, a = 2, 4, 25, spec.n_agents, spec.n_actions
    k_obs, k_act = jax.random.split(jax.random.key(0))
    batch = EpisodeBatch(
        obs=jax.random.normal(k_obs, (seeds, b, t + 1, n, spec.obs_dim)),
        state=jnp.zeros((seeds, b, t + 1, spec.state_dim)),
        avail=jnp.ones((seeds, b, t + 1, n, a), bool),
        actions=jax.random.randint(k_act, (seeds, b, t, n), 0, a),
        reward=jnp.ones((seeds, b, t)),
        terminated=jnp.zeros((seeds, b, t), bool),
        mask=jnp.ones((seeds, b, t), bool),
    )
    keys = jax.random.split(jax.random.key(1), seeds)
    update = jax.vmap(lambda ts, batch, key: algo.update(ts, batch, key, update_ctx()))
    _, metrics = jax.jit(update)(jax.vmap(algo.init)(keys), batch, keys)
    losses = np.asarray(metrics["message_loss"])
    assert losses.shape == (seeds,) and np.all(np.isfinite(losses)) and losses[0] != losses[1]


@pytest.mark.parametrize(
    "name, overrides, alpha_moves",
    [
        # The initial policy is close to uniform: entropy just under log 3. A target of
        # 0.5 log 3 is below it (alpha falls), a target of log 3 above it (alpha rises).
        ("lsf_sac", (), "falls"),
        ("masac", ("algo.target_entropy_ratio=1.0", "lsf_sac.target=soft"), "rises"),
        # MASAC_DoubleQ with the max target and a fixed alpha: without messages (covered above),
        # so that its compile is cheap enough for the default suite.
        ("masac", ("lsf_sac.double_q=true", "lsf_sac.target=max", "lsf_sac.fixed_alpha=1.0"), "fixed"),
    ],
)
def test_update_variants(name, overrides, alpha_moves):
    env, algo = built(name, *overrides)
    ts = algo.init(jax.random.key(0))
    batch = episodes(env, algo, ts, n=4)
    ts2, metrics = run_once(algo.update, ts, batch.truncate(6), jax.random.key(1), update_ctx())
    assert {"critic_loss", "actor_loss", "message_loss", "alpha", "entropy"} <= set(metrics)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert int(ts2.updates) == 1
    if name == "masac":
        assert float(metrics["message_loss"]) == 0.0 and "message" not in ts.params["critic"]
    else:
        assert float(metrics["message_loss"]) > 0.0
    assert 0.0 < float(metrics["entropy"]) < np.log(3.0)
    before, after = float(ts.params["log_alpha"]), float(ts2.params["log_alpha"])
    if alpha_moves == "fixed":
        assert float(metrics["alpha"]) == 1.0
    else:
        assert (after > before) == (alpha_moves == "rises") and after != before
    n_sets = 2 if "lsf_sac.double_q=true" in overrides else 1
    assert jax.tree.leaves(ts.params["mixer"])[0].shape[0] == n_sets
    # The actors moved; so did the critics.
    for part in ("actor", "critic"):
        moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), ts.params[part], ts2.params[part])
        assert max(jax.tree.leaves(moved)) > 0.0, part
    q_tot, q = algo.joint_q(ts2, batch)
    assert q_tot.shape == (4, 10, 9) and q.shape == (4, 10, 2, 3)


@pytest.mark.parametrize("overrides, entropy_in_target", [((), False), (("lsf_sac.target=soft",), True)])
def test_default_critic_target_has_no_entropy_term(overrides, entropy_in_target):
    # Eq. 16's target is r + gamma mix'(s', E_pi[q']): the temperature must not reach it
    # by default (it does with SAC's soft value). Two states that differ only in alpha.
    env, algo = built("masac", "algo.gamma=0.9", *overrides)  # the game's own gamma is 0
    ts = algo.init(jax.random.key(0))
    batch = episodes(env, algo, ts, n=4).truncate(6)
    hot = ts.replace(params={**ts.params, "log_alpha": ts.params["log_alpha"] + 2.0})
    both = jax.tree.map(lambda a, b: jnp.stack([a, b]), ts, hot)
    update = jax.vmap(lambda t: algo.update(t, batch, jax.random.key(1), update_ctx()))
    targets = np.asarray(run_once(update, both)[1]["target_mean"])
    assert (abs(targets[1] - targets[0]) > 1e-3) == entropy_in_target, targets


@pytest.mark.parametrize(
    "override, key",
    [
        ("lsf_sac.target=mean", "lsf_sac.target"),
        ("lsf_sac.fixed_alpha=-1", "lsf_sac.fixed_alpha"),
        ("lsf_sac.message_dim=0", "lsf_sac.message_dim"),
        ("algo.target_entropy_ratio=2", "algo.target_entropy_ratio"),
    ],
)
def test_bad_config_names_the_key(make_cfg, override, key):
    with pytest.raises(ConfigError, match=key):
        make_cfg("algo=lsf_sac", override)
