"""LIMARL's recurrent modules (seed 000, section 5).

`ROLIM` (recurrent observation-to-latent inference): a GRU over each agent's
[obs, onehot(last action), onehot(id)] whose heads give the Gaussian
(mu_hat, log sigma_hat^2) of the state latent; parameters shared by all agents.

`LatentAgent`: the recurrent Q agent whose utilities also see a latent,
Q_i(. | tau_i, mu_i) = MLP([h_i, mu_i]). Its input is the usual agent input with
the latent appended as the last `latent_dim` entries, so `jlmarl.nets.recurrent.unroll`
runs it over whole episodes unchanged.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jlmarl.nets.recurrent import trunk


class ROLIM(nn.Module):
    """hidden [..., H], inputs [..., D] -> (hidden, [mu_hat, logvar_hat] [..., 2 * latent_dim])."""

    hidden_dim: int
    latent_dim: int

    def trunk_inputs(self, inputs: jax.Array) -> jax.Array:
        return inputs

    @nn.compact
    def __call__(self, hidden: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        hidden = trunk(hidden, inputs, self.hidden_dim)
        mu = nn.Dense(self.latent_dim, name="mu")(hidden)
        logvar = nn.Dense(self.latent_dim, name="logvar")(hidden)
        return hidden, jnp.concatenate([mu, logvar], axis=-1)


class LatentAgent(nn.Module):
    """hidden [..., H], inputs [..., D + latent_dim] -> (hidden, q [..., n_actions])."""

    hidden_dim: int
    n_actions: int
    latent_dim: int

    def trunk_inputs(self, inputs: jax.Array) -> jax.Array:
        return inputs[..., : -self.latent_dim]  # the latent joins after the GRU

    @nn.compact
    def __call__(self, hidden: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        obs_in, latent = inputs[..., : -self.latent_dim], inputs[..., -self.latent_dim :]
        hidden = trunk(hidden, obs_in, self.hidden_dim)
        q = nn.relu(nn.Dense(self.hidden_dim, name="head0")(jnp.concatenate([hidden, latent], axis=-1)))
        return hidden, nn.Dense(self.n_actions, name="head1")(q)
