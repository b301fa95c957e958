"""Losses checked by hand on tiny inputs (values computed here, not by the code under
test), and which network each loss can move."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jlmarl.algos.i2q import I2QNets, episode_transitions, i2q_losses
from jlmarl.algos.lsf_sac import actor_loss, masked_policy, next_value
from jlmarl.core.buffer import EpisodeBatch

LOG_HALF = np.log(0.5)


def test_lsf_sac_next_state_values_by_hand():
    q_next = jnp.array([[1.0, 3.0, 9.0]])  # [n=1, A=3]; action 2 unavailable
    avail = jnp.array([[True, True, False]])
    probs, logp = masked_policy(jnp.zeros((1, 3)), avail)  # uniform over the two available
    np.testing.assert_allclose(probs, [[0.5, 0.5, 0.0]], atol=1e-7)
    alpha = 0.5
    soft = 0.5 * (1 - alpha * LOG_HALF) + 0.5 * (3 - alpha * LOG_HALF)
    np.testing.assert_allclose(next_value(q_next, probs, logp, alpha, avail, "soft"), [soft], rtol=1e-6)
    np.testing.assert_allclose(next_value(q_next, probs, logp, alpha, avail, "expected"), [2.0], rtol=1e-6)
    np.testing.assert_allclose(next_value(q_next, probs, logp, alpha, avail, "max"), [3.0], rtol=1e-6)


def test_lsf_sac_actor_loss_by_hand_and_it_reaches_the_actors_only():
    logits = jnp.zeros((1, 1, 2))  # [B*T=1, n=1, A=2]
    q = jnp.array([[[1.0, 3.0]]])
    mixer = {"w": jnp.float32(2.0)}
    mix = lambda mp, v: mp["w"] * v.sum(-1)  # noqa: E731
    mask = jnp.ones((1,))

    def loss(logits, q, alpha, mixer):
        probs, logp = masked_policy(logits, jnp.ones((1, 1, 2), bool))
        return actor_loss(probs, logp, q, alpha, mixer, mix, mask)

    # V = sum_a 0.5 (q_a - 0.5 log 0.5) = 2 - 0.5 log 0.5; loss = -w V
    np.testing.assert_allclose(loss(logits, q, 0.5, mixer), -2.0 * (2.0 - 0.5 * LOG_HALF), rtol=1e-6)
    g_logits, g_q, g_alpha, g_mixer = jax.grad(loss, argnums=(0, 1, 2, 3))(logits, q, 0.5, mixer)
    assert np.abs(g_logits).sum() > 0  # the policy moves (toward the action with q = 3)
    assert float(g_logits[0, 0, 1]) < 0 < float(g_logits[0, 0, 0])
    assert np.abs(g_q).sum() == 0 and float(g_alpha) == 0 and float(g_mixer["w"]) == 0


class LinearNets(I2QNets):
    """I2Q's three networks replaced by closed forms, so every target is computable by hand:
    Q(o)[a] = w_a o,  Qss(o, o') = a o + b o',  f(o, a) = o + s (a + 1)."""

    def q_values(self, p, o, c):
        return o[..., :1] * p["w"]

    def qss_value(self, p, o, c, o_next):
        return p["a"] * o[..., 0] + p["b"] * o_next[..., 0]

    def f_predict(self, p, o, c, a):
        return o + p["s"] * (a[..., None] + 1.0)


def _one_step_batch():
    return EpisodeBatch(
        obs=jnp.array([1.0, 2.0]).reshape(1, 2, 1, 1),  # o = 1, o' = 2; one agent
        state=jnp.zeros((1, 2, 1)),
        avail=jnp.ones((1, 2, 1, 2), bool),
        actions=jnp.ones((1, 1, 1), jnp.int32),  # a = 1
        reward=jnp.array([[0.5]]),
        terminated=jnp.array([[False]]),
        mask=jnp.array([[True]]),
    )


PARAMS = {
    "q": {"w": jnp.array([1.0, 2.0])},
    "qss": {"a": jnp.float32(0.5), "b": jnp.float32(1.0)},
    "f": {"s": jnp.float32(0.25)},
}
TARGET_QSS = {"a": jnp.float32(0.2), "b": jnp.float32(0.3)}


def _losses(params):
    nets = LinearNets(obs_dim=1, n_actions=2, hidden_dim=1)
    ctx = jnp.zeros((1, 2, 1, 1))
    transitions = episode_transitions(_one_step_batch(), ctx)
    return i2q_losses(nets, params, TARGET_QSS, transitions, gamma=0.9, lambda_f=0.1)


def test_i2q_losses_by_hand():
    losses, metrics = _losses(PARAMS)
    # f(o=1, a=1) = 1.5: L_f = -0.1 Qss(1, 1.5) + (2 - 1.5)^2 = -0.1 * 2.0 + 0.25
    np.testing.assert_allclose(losses["f"], [0.05], rtol=1e-6)
    # a* = argmax Q(o'=2) = 1; f(2, 1) = 2.5; y_ss = 0.5 + 0.9 (0.2 * 2 + 0.3 * 2.5) = 1.535
    # Qss(1, 2) = 2.5 -> L_Qss = 0.965^2
    np.testing.assert_allclose(losses["qss"], [0.965**2], rtol=1e-5)
    # y_Q = max(Qss_tgt(1, 2), Qss_tgt(1, 1.5)) = max(0.8, 0.65); Q(1)[1] = 2 -> L_Q = 1.2^2
    np.testing.assert_allclose(losses["q"], [1.44], rtol=1e-6)
    np.testing.assert_allclose(metrics["target_mean"], 0.8, rtol=1e-6)


def test_each_i2q_loss_moves_only_its_own_network():
    for name in ("f", "qss", "q"):
        grads = jax.grad(lambda p, name=name: _losses(p)[0][name].sum())(PARAMS)
        for net, g in grads.items():
            moved = sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(g)) > 0
            assert moved == (net == name), f"L_{name} moved {net}"
