"""Belief-I2Q's belief model: a recurrent conditional VAE over the hidden part of the state.

Per agent, with parameters shared across agents (seed 002, stage 1):

    h_t     = GRU(h_{t-1}, [o_t, onehot(a_{t-1})])      history encoder
    q(z | hidden_t, h_t)                                 posterior (pre-training only)
    p(z | h_t)                                           prior
    p(hidden_t | z, h_t)                                 decoder (Gaussian, unit variance -> squared error)

Trained on state-labelled episodes with reconstruction + KL(q || p). The belief
an agent acts on is the mean of `samples` decoded draws with z from the prior,
whose standard deviation is scaled by `temperature` (0.5 in the paper).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jlmarl.nets.gaussian import kl_diag

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # keeps exp(log_std) and the KL finite early in training


def history_inputs(obs: jax.Array, last_action: jax.Array, n_actions: int) -> jax.Array:
    """obs [..., obs_dim], last_action int [...] (-1 = none yet) -> [o_t, onehot(a_{t-1})]."""
    return jnp.concatenate([obs, jax.nn.one_hot(last_action, n_actions, dtype=obs.dtype)], axis=-1)


def episode_history_inputs(obs: jax.Array, actions: jax.Array, n_actions: int) -> jax.Array:
    """obs [B, T+1, n, obs_dim], actions [B, T, n] -> [B, T+1, n, obs_dim + n_actions]."""
    last = jnp.concatenate([jnp.full_like(actions[:, :1], -1), actions], axis=1)
    return history_inputs(obs, last, n_actions)


class _GaussianHead(nn.Module):
    z_dim: int
    mlp_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = nn.relu(nn.Dense(self.mlp_dim)(x))
        out = nn.Dense(2 * self.z_dim)(x)
        mu, log_std = jnp.split(out, 2, axis=-1)
        return mu, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class BeliefModel(nn.Module):
    label_dim: int  # size of the hidden part of the state
    hidden_dim: int = 64  # GRU history size
    z_dim: int = 8
    mlp_dim: int = 64

    def setup(self):
        self.embed = nn.Dense(self.hidden_dim)
        self.gru = nn.GRUCell(self.hidden_dim)
        self.posterior_head = _GaussianHead(self.z_dim, self.mlp_dim)
        self.prior_head = _GaussianHead(self.z_dim, self.mlp_dim)
        self.dec_hidden = nn.Dense(self.mlp_dim)
        self.dec_out = nn.Dense(self.label_dim)

    def step(self, h: jax.Array, x: jax.Array) -> jax.Array:
        """One step of the history encoder: h [..., H], x [..., obs+A] -> h [..., H]."""
        h, _ = self.gru(h, nn.relu(self.embed(x)))
        return h

    def prior(self, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.prior_head(h)

    def posterior(self, h: jax.Array, label: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.posterior_head(jnp.concatenate([label, h], axis=-1))

    def decode(self, h: jax.Array, z: jax.Array) -> jax.Array:
        return self.dec_out(nn.relu(self.dec_hidden(jnp.concatenate([z, h], axis=-1))))

    def __call__(self, h: jax.Array, x: jax.Array, label: jax.Array) -> jax.Array:
        """Touches every submodule (used by init only)."""
        h = self.step(h, x)
        mu, _ = self.posterior(h, label)
        self.prior(h)
        return self.decode(h, mu)


def init_belief(model: BeliefModel, key: jax.Array, in_dim: int):
    h = jnp.zeros((1, model.hidden_dim))
    return model.init(key, h, jnp.zeros((1, in_dim)), jnp.zeros((1, model.label_dim)))


def unroll_history(model: BeliefModel, params, inputs: jax.Array) -> jax.Array:
    """inputs [B, T, n, D] -> histories h [B, T, n, H] from a zero start (time is scanned)."""
    b, _, n, _ = inputs.shape

    def step(h, x):
        h = model.apply(params, h, x, method=BeliefModel.step)
        return h, h

    h0 = jnp.zeros((b, n, model.hidden_dim), inputs.dtype)
    _, hs = jax.lax.scan(step, h0, jnp.swapaxes(inputs, 0, 1))
    return jnp.swapaxes(hs, 0, 1)


def sample_belief(
    model: BeliefModel, params, h: jax.Array, key: jax.Array, samples: int, temperature: float
) -> jax.Array:
    """The belief: mean of `samples` decodings with z ~ N(mu_p, (temperature * std_p)^2).

    h [..., H] -> [..., label_dim]."""
    mu, log_std = model.apply(params, h, method=BeliefModel.prior)
    eps = jax.random.normal(key, (samples, *mu.shape), mu.dtype)
    z = mu + temperature * jnp.exp(log_std) * eps
    decoded = model.apply(params, jnp.broadcast_to(h, (samples, *h.shape)), z, method=BeliefModel.decode)
    return decoded.mean(axis=0)


def cvae_terms(model: BeliefModel, params, h: jax.Array, label: jax.Array, key: jax.Array):
    """Per-position reconstruction error (posterior sample) and KL(q || p), summed over
    their last axes. h [..., H], label [..., L] -> (recon [...], kl [...])."""
    mu_q, log_std_q = model.apply(params, h, label, method=BeliefModel.posterior)
    mu_p, log_std_p = model.apply(params, h, method=BeliefModel.prior)
    z = mu_q + jnp.exp(log_std_q) * jax.random.normal(key, mu_q.shape, mu_q.dtype)
    recon = model.apply(params, h, z, method=BeliefModel.decode)
    return ((recon - label) ** 2).sum(-1), kl_diag(mu_q, 2.0 * log_std_q, mu_p, 2.0 * log_std_p)
