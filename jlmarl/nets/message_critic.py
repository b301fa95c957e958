"""LSF-SAC's message pool (seed 003); the critic itself is built from the library's
blocks: the recurrent trunk (jlmarl.nets.recurrent), MLP heads (jlmarl.nets.mlp) and
the unit-variance message KL (jlmarl.nets.gaussian.kl_std_normal).

The local critic q_i(tau_i, ., m_i) of agent i is a GRU over [o, onehot(a_prev),
onehot(i)] whose features feed three heads: the message encoder f_m (the mean of
agent i's outgoing message, m_i^out ~ N(f_m(tau_i), I)), the Q head on [features,
m_i] and the action predictor q_psi on [features, m_i], where m_i is every *other*
agent's outgoing message (the agent's own slot is zeroed).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def incoming_messages(messages: jax.Array) -> jax.Array:
    """messages [..., n, d] (agent j's outgoing message in row j) -> [..., n, n*d]: row i
    holds every agent's message in agent order with agent i's own slot zeroed."""
    n, d = messages.shape[-2:]
    others = 1.0 - jnp.eye(n, dtype=messages.dtype)  # [receiver, sender]
    pooled = others[:, :, None] * messages[..., None, :, :]  # [..., n, n, d]
    return pooled.reshape(*messages.shape[:-2], n, n * d)
