"""Independent (unshared) parameters per agent, for fully decentralised learners.

Every parameter leaf gets a leading agent axis [n, ...]; a network is applied to
agent i's slice of arrays laid out [..., n, D] (agents on axis -2, as everywhere
in the engine) with agent i's parameters only, via vmap. No parameter, gradient
or clipping statistic is shared between agents.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jlmarl.nets.agents import RNNAgent
from jlmarl.nets.recurrent import unroll


def init_per_agent(module: nn.Module, key: jax.Array, n_agents: int, *example_inputs: jax.Array):
    """Parameters of `n_agents` independently initialised copies: leaves [n, ...]."""
    return jax.vmap(lambda k: module.init(k, *example_inputs))(jax.random.split(key, n_agents))


def apply_per_agent(module: nn.Module, params, *inputs: jax.Array):
    """module applied per agent: inputs [..., n, D] (agent axis -2), outputs [..., n, out]."""
    in_axes = (0,) + (-2,) * len(inputs)
    return jax.vmap(module.apply, in_axes=in_axes, out_axes=-2)(params, *inputs)


def step_rnn_per_agent(agent: RNNAgent, params, hidden: jax.Array, inputs: jax.Array):
    """One GRU step per agent: hidden [..., n, H], inputs [..., n, D] -> (hidden, out)."""
    return jax.vmap(agent.apply, in_axes=(0, -2, -2), out_axes=(-2, -2))(params, hidden, inputs)


def unroll_per_agent(agent: RNNAgent, params, inputs: jax.Array) -> jax.Array:
    """inputs [B, T, n, D] -> outputs [B, T, n, out], agent i unrolled with its own params."""

    def one(p, x):  # x [B, T, D]
        return unroll(agent, p, x[:, :, None])[:, :, 0]

    return jax.vmap(one, in_axes=(0, 2), out_axes=2)(params, inputs)


def clip_per_agent(grads, max_norm: float):
    """Scales each agent's gradient (each top-level network separately) to norm <= max_norm."""

    def clip(tree):
        leaves = jax.tree.leaves(tree)
        if not leaves:
            return tree
        sq = sum(jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=1) for x in leaves)  # [n]
        scale = jnp.minimum(1.0, max_norm / jnp.maximum(jnp.sqrt(sq), 1e-12))
        return jax.tree.map(lambda x: x * scale.reshape((-1,) + (1,) * (x.ndim - 1)), tree)

    return {k: clip(v) for k, v in grads.items()}


def soft_update(target, online, tau: float):
    """Polyak averaging: target <- tau * online + (1 - tau) * target."""
    return optax.incremental_update(online, target, tau)
