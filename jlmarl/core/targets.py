"""Return targets computed over padded episodes."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def td_lambda_targets(
    reward: jax.Array,
    terminated: jax.Array,
    mask: jax.Array,
    target_q: jax.Array,
    gamma: float,
    lam: float,
) -> jax.Array:
    """TD(lambda) targets, backwards over time with lax.scan.

        G_t = r_t + gamma (1 - term_t) [ lam G'_{t+1} + (1 - lam) Qbar_{t+1} ]

    where G'_{t+1} = G_{t+1} while step t+1 is inside the episode and Qbar_{t+1}
    once it is not (a truncated episode bootstraps from its last observation; a
    terminated one does not bootstrap at all). lam = 0 is one-step TD.

    reward, terminated, mask: [B, T]; target_q: [B, T+1, ...] (trailing axes, e.g.
    agents for independent learners, broadcast). Returns [B, T, ...]; entries
    outside the episode (mask false) are meaningless and must be masked by the loss.
    """
    extra = target_q.ndim - reward.ndim
    expand = lambda x: x.reshape(x.shape + (1,) * extra)  # noqa: E731
    r, cont = expand(reward), expand(1.0 - terminated.astype(target_q.dtype))
    valid_next = expand(jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1))

    def back(g_next, t):
        q_next = target_q[:, t + 1]
        g_next = jnp.where(valid_next[:, t], g_next, q_next)
        g = r[:, t] + gamma * cont[:, t] * (lam * g_next + (1.0 - lam) * q_next)
        return g, g

    t_len = reward.shape[1]
    _, gs = jax.lax.scan(back, target_q[:, -1], jnp.arange(t_len), reverse=True)
    return jnp.moveaxis(gs, 0, 1)
