"""The recurrent Q agent (PyMARL's RNNAgent) and the per-agent inputs every learner feeds.

One set of parameters serves every agent; agents are told apart by a one-hot id
in the input. Inputs per agent and step: [obs, onehot(last action), onehot(id)].
The agent is the recurrent trunk (jlmarl.nets.recurrent) with a linear Q head on h_t.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jlmarl.nets.recurrent import trunk


class RNNAgent(nn.Module):
    """hidden [..., H], inputs [..., D] -> (h_t [..., H], q [..., n_actions]).

    layers / layer_norm: the trunk's Dense blocks before the GRU (PQN's agent: two,
    layer-normalised); the default is PyMARL's fc1 -> GRU -> fc2."""

    hidden_dim: int
    n_actions: int
    layers: int = 1
    layer_norm: bool = False

    def trunk_inputs(self, inputs: jax.Array) -> jax.Array:
        return inputs

    @nn.compact
    def __call__(self, hidden: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        hidden = trunk(hidden, inputs, self.hidden_dim, layers=self.layers, layer_norm=self.layer_norm)
        head = "fc2" if self.layers == 1 else "q"  # PyMARL's name for the default agent
        return hidden, nn.Dense(self.n_actions, name=head)(hidden)


def agent_inputs(obs: jax.Array, last_action: jax.Array, n_actions: int) -> jax.Array:
    """obs [..., n, obs_dim], last_action int [..., n] (-1 = none yet) -> [..., n, D]."""
    n_agents = obs.shape[-2]
    ids = jnp.broadcast_to(jnp.eye(n_agents, dtype=obs.dtype), (*obs.shape[:-2], n_agents, n_agents))
    return jnp.concatenate([obs, jax.nn.one_hot(last_action, n_actions, dtype=obs.dtype), ids], axis=-1)


def input_dim(obs_dim: int, n_actions: int, n_agents: int) -> int:
    return obs_dim + n_actions + n_agents


def episode_inputs(obs: jax.Array, actions: jax.Array, n_actions: int) -> jax.Array:
    """Inputs for a whole padded episode batch.

    obs [B, T+1, n, obs_dim], actions [B, T, n] -> [B, T+1, n, D]; the input at t
    carries the action of t-1 (none at t=0).
    """
    none = jnp.full_like(actions[:, :1], -1)
    last = jnp.concatenate([none, actions], axis=1)
    return agent_inputs(obs, last, n_actions)


def segment_inputs(
    obs: jax.Array, actions: jax.Array, resets: jax.Array, last_action: jax.Array, n_actions: int
) -> jax.Array:
    """Inputs for a segment of steps that may start mid-episode and hold episode starts.

    obs [B, T+1, n, obs_dim], actions [B, T, n], resets bool [B, T+1] (episode starts),
    last_action int [B, n] (the action before the segment's first step) -> [B, T+1, n, D];
    the last action reads -1 (none) at every episode start."""
    last = jnp.concatenate([last_action[:, None], actions], axis=1)  # [B, T+1, n]
    last = jnp.where(resets[..., None], -1, last)
    return agent_inputs(obs, last, n_actions)


def masked_argmax(q: jax.Array, avail: jax.Array) -> jax.Array:
    """Greedy action among the available ones; q, avail [..., A] -> int32 [...]."""
    return jnp.argmax(jnp.where(avail, q, -jnp.inf), axis=-1).astype(jnp.int32)
