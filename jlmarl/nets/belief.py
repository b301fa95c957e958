"""Belief-I2Q's belief model: a recurrent conditional VAE over the hidden part of the state.

Per agent, with parameters shared across agents (seed 002, stage 1):

    h_t     = GRU(h_{t-1}, [o_t, onehot(a_{t-1})])      history encoder
    q(z | hidden_t, h_t)                                 posterior (pre-training only)
    p(z | h_t)                                           prior
    p(hidden_t | z, h_t) = N(mu_d, exp(logvar_d))        decoder (mean and variance heads)

Trained on state-labelled episodes with the decoder's Gaussian negative log-likelihood
+ KL(q || p). The belief an agent acts on is the decoder's mean and log-variance
(the paper's uncertainty-aware belief), each averaged over `samples` draws with z
from the prior, whose standard deviation is scaled by `temperature` (0.5 in the
paper): [mean (label_dim), log-variance (label_dim)].

The prior and posterior are the library's GaussianHead (one hidden layer of
mlp_dim); the decoder is the library's MLP with 2 x label_dim outputs.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jlmarl.nets.gaussian import GaussianHead, kl_diag
from jlmarl.nets.mlp import MLP
from jlmarl.nets.recurrent import trunk_states

# Keeps exp(logvar), the KL and the likelihood finite early in training (std in [e^-5, e^2]).
LOGVAR_MIN, LOGVAR_MAX = -10.0, 4.0


def history_inputs(obs: jax.Array, last_action: jax.Array, n_actions: int) -> jax.Array:
    """obs [..., obs_dim], last_action int [...] (-1 = none yet) -> [o_t, onehot(a_{t-1})]."""
    return jnp.concatenate([obs, jax.nn.one_hot(last_action, n_actions, dtype=obs.dtype)], axis=-1)


def episode_history_inputs(obs: jax.Array, actions: jax.Array, n_actions: int) -> jax.Array:
    """obs [B, T+1, n, obs_dim], actions [B, T, n] -> [B, T+1, n, obs_dim + n_actions]."""
    last = jnp.concatenate([jnp.full_like(actions[:, :1], -1), actions], axis=1)
    return history_inputs(obs, last, n_actions)


class BeliefModel(nn.Module):
    label_dim: int  # size of the hidden part of the state
    hidden_dim: int = 64  # GRU history size
    z_dim: int = 8
    mlp_dim: int = 64

    @property
    def belief_dim(self) -> int:
        """Size of the belief fed to the learner: decoded mean and log-variance."""
        return 2 * self.label_dim

    def setup(self):
        self.embed = nn.Dense(self.hidden_dim)
        self.gru = nn.GRUCell(self.hidden_dim)
        self.posterior_head = GaussianHead(self.z_dim, (self.mlp_dim,))
        self.prior_head = GaussianHead(self.z_dim, (self.mlp_dim,))
        self.decoder = MLP((self.mlp_dim, 2 * self.label_dim))

    def step(self, h: jax.Array, x: jax.Array) -> jax.Array:
        """One step of the history encoder: h [..., H], x [..., obs+A] -> h [..., H]."""
        h, _ = self.gru(h, nn.relu(self.embed(x)))
        return h

    def prior(self, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        """p(z | h): (mean, log-variance) [..., z_dim]."""
        mu, logvar = self.prior_head(h)
        return mu, jnp.clip(logvar, LOGVAR_MIN, LOGVAR_MAX)

    def posterior(self, h: jax.Array, label: jax.Array) -> tuple[jax.Array, jax.Array]:
        """q(z | label, h): (mean, log-variance) [..., z_dim]."""
        mu, logvar = self.posterior_head(jnp.concatenate([label, h], axis=-1))
        return mu, jnp.clip(logvar, LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, h: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """p(label | z, h): (mean, log-variance) [..., label_dim]."""
        mu, logvar = jnp.split(self.decoder(jnp.concatenate([z, h], axis=-1)), 2, axis=-1)
        return mu, jnp.clip(logvar, LOGVAR_MIN, LOGVAR_MAX)

    def __call__(self, h: jax.Array, x: jax.Array, label: jax.Array):
        """Touches every submodule (used by init only)."""
        h = self.step(h, x)
        mu, _ = self.posterior(h, label)
        self.prior(h)
        return self.decode(h, mu)


def init_belief(model: BeliefModel, key: jax.Array, in_dim: int):
    h = jnp.zeros((1, model.hidden_dim))
    return model.init(key, h, jnp.zeros((1, in_dim)), jnp.zeros((1, model.label_dim)))


def unroll_history(model: BeliefModel, params, inputs: jax.Array) -> jax.Array:
    """inputs [B, T, n, D] -> histories h [B, T, n, H] from a zero start.

    The encoder (embed -> ReLU -> GRU) is the recurrent trunk under other names, so it
    unrolls the trunk's way: the embedding and the GRU's input side are one batched
    product over all steps, only the hidden-side product is scanned."""
    b, t, n, _ = inputs.shape
    p = params["params"]
    h0 = jnp.zeros((b, n, model.hidden_dim), inputs.dtype)
    keep = jnp.ones((t, b, 1, 1), inputs.dtype)
    _, hs = trunk_states({"fc1": p["embed"], "gru": p["gru"]}, inputs, h0, keep, layers=1)
    return hs


def sample_belief(
    model: BeliefModel, params, h: jax.Array, key: jax.Array, samples: int, temperature: float
) -> jax.Array:
    """The belief: the decoder's mean and log-variance, each averaged over `samples`
    draws z ~ N(mu_p, temperature^2 sigma_p^2). h [..., H] -> [..., 2 label_dim]."""
    mu, logvar = model.apply(params, h, method=BeliefModel.prior)
    eps = jax.random.normal(key, (samples, *mu.shape), mu.dtype)
    z = mu + temperature * jnp.exp(0.5 * logvar) * eps
    hs = jnp.broadcast_to(h, (samples, *h.shape))
    mean, log_var = model.apply(params, hs, z, method=BeliefModel.decode)
    return jnp.concatenate([mean.mean(axis=0), log_var.mean(axis=0)], axis=-1)


def gaussian_nll(x: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """-log N(x; mu, exp(logvar)) summed over the last axis, without the constant
    (d/2) log(2 pi)."""
    return 0.5 * jnp.sum((x - mu) ** 2 * jnp.exp(-logvar) + logvar, axis=-1)


def cvae_terms(model: BeliefModel, params, h: jax.Array, label: jax.Array, key: jax.Array):
    """Per-position reconstruction terms (posterior sample) and KL(q || p), summed over
    their last axes. h [..., H], label [..., L] -> (nll [...], squared error [...], kl [...]):
    the decoder's Gaussian negative log-likelihood (the loss) and its mean's squared error
    (what the old unit-variance decoder minimised; a readable metric)."""
    mu_q, logvar_q = model.apply(params, h, label, method=BeliefModel.posterior)
    mu_p, logvar_p = model.apply(params, h, method=BeliefModel.prior)
    z = mu_q + jnp.exp(0.5 * logvar_q) * jax.random.normal(key, mu_q.shape, mu_q.dtype)
    mean, logvar = model.apply(params, h, z, method=BeliefModel.decode)
    sq = ((mean - label) ** 2).sum(-1)
    return gaussian_nll(label, mean, logvar), sq, kl_diag(mu_q, logvar_q, mu_p, logvar_p)
