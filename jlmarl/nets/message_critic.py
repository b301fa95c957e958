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
    # every row is the flat [n*d] message vector with the receiver's own d entries zeroed;
    # built flat because the [..., n, n, d] form (mask times messages, then a reshape) made
    # XLA's CPU build of the update vmapped over >= 2 seeds crash (segfault) with 3 or
    # more agents on 100+ rows (jax 0.10.2; tests/test_lsf_sac.py)
    others = jnp.repeat(1.0 - jnp.eye(n, dtype=messages.dtype), d, axis=1)  # [receiver, sender*d]
    return messages.reshape(*messages.shape[:-2], 1, n * d) * others
