import jax.numpy as jnp
import numpy as np
import pytest

from jlmarl.core.targets import td_lambda_targets

G, L = 0.9, 0.6


def targets(reward, term, mask, q, gamma=G, lam=L):
    arr = lambda x, dt=jnp.float32: jnp.asarray([x], dt)  # noqa: E731
    out = td_lambda_targets(arr(reward), arr(term, bool), arr(mask, bool), arr(q), gamma, lam)
    return np.asarray(out[0])


def test_terminal_episode_hand_computed():
    # 3 real steps then padding; the third step is a true terminal.
    r, q = [1.0, 2.0, 3.0, 0.0], [10.0, 20.0, 30.0, 40.0, 50.0]
    g = targets(r, [0, 0, 1, 0], [1, 1, 1, 0], q)
    g2 = 3.0
    g1 = 2.0 + G * (L * g2 + (1 - L) * 30.0)
    g0 = 1.0 + G * (L * g1 + (1 - L) * 20.0)
    np.testing.assert_allclose(g[:3], [g0, g1, g2], rtol=1e-6)


def test_truncated_episode_bootstraps_from_last_observation():
    # 2 real steps, then the time limit (no terminal): G_1 bootstraps from Qbar_2.
    r, q = [1.0, 2.0, 0.0, 0.0], [10.0, 20.0, 30.0, 40.0, 50.0]
    g = targets(r, [0, 0, 0, 0], [1, 1, 0, 0], q)
    g1 = 2.0 + G * 30.0
    g0 = 1.0 + G * (L * g1 + (1 - L) * 20.0)
    np.testing.assert_allclose(g[:2], [g0, g1], rtol=1e-6)


def test_full_length_truncation_uses_final_entry():
    r, q = [1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 7.0]
    g = targets(r, [0, 0, 0], [1, 1, 1], q)
    g2 = 1.0 + G * 7.0
    g1 = 1.0 + G * (L * g2 + (1 - L) * 0.0)
    g0 = 1.0 + G * (L * g1)
    np.testing.assert_allclose(g, [g0, g1, g2], rtol=1e-6)


@pytest.mark.parametrize("term", [[0, 0, 1, 0], [0, 0, 0, 0]])
def test_lambda_zero_is_one_step_td(term):
    r, q, mask = [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0, 9.0], [1, 1, 1, 0]
    g = targets(r, term, mask, q, lam=0.0)
    expected = [r[t] + G * (1 - term[t]) * q[t + 1] for t in range(3)]
    np.testing.assert_allclose(g[:3], expected, rtol=1e-6)


def test_trailing_axes_broadcast_per_agent():
    reward = jnp.ones((2, 3))
    term = jnp.zeros((2, 3), bool)
    mask = jnp.ones((2, 3), bool)
    q = jnp.stack([jnp.zeros((2, 4)), jnp.ones((2, 4))], axis=-1)  # [B, T+1, n=2]
    out = td_lambda_targets(reward, term, mask, q, G, L)
    assert out.shape == (2, 3, 2)
    np.testing.assert_allclose(out[..., 0], td_lambda_targets(reward, term, mask, q[..., 0], G, L), rtol=1e-6)
