"""Mixers: per-agent utilities Q_i -> joint value Q_tot, conditioned on the state."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class VDNMixer(nn.Module):
    """Q_tot = sum_i Q_i (no parameters)."""

    @nn.compact
    def __call__(self, qs: jax.Array, state: jax.Array) -> jax.Array:
        del state
        return qs.sum(axis=-1)


class QMixer(nn.Module):
    """QMIX: a monotonic two-layer mixing network whose weights come from
    hypernetworks on the state; abs() keeps dQ_tot/dQ_i >= 0.

    qs [..., n_agents], state [..., state_dim] -> Q_tot [...].
    """

    n_agents: int
    embed_dim: int = 32
    hypernet_embed: int = 64

    @nn.compact
    def __call__(self, qs: jax.Array, state: jax.Array) -> jax.Array:
        lead = qs.shape[:-1]
        qs = qs.reshape(-1, 1, self.n_agents)
        s = state.reshape(-1, state.shape[-1])
        e = self.embed_dim

        def hyper(out, name):
            h = nn.relu(nn.Dense(self.hypernet_embed, name=f"{name}_0")(s))
            return nn.Dense(out, name=f"{name}_1")(h)

        w1 = jnp.abs(hyper(self.n_agents * e, "hyper_w1")).reshape(-1, self.n_agents, e)
        b1 = nn.Dense(e, name="hyper_b1")(s).reshape(-1, 1, e)
        w2 = jnp.abs(hyper(e, "hyper_w2")).reshape(-1, e, 1)
        v = nn.Dense(1, name="v_1")(nn.relu(nn.Dense(e, name="v_0")(s))).reshape(-1, 1, 1)
        hidden = jax.nn.elu(qs @ w1 + b1)
        return (hidden @ w2 + v).reshape(lead)
