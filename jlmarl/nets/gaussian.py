"""Diagonal Gaussians, parameterised by mean and log-variance: the Gaussian head,
sampling and KLs.

Every KL here is summed over the last (latent) axis, the papers' D_KL; callers
average over samples themselves. KL balancing (used by MMSA and VDFD) splits one KL's
gradient between the posterior and the prior.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# The log-variance every head outputs is clipped to this range, as SAC implementations clip
# log sigma: an unbounded linear log-variance makes exp() the scale of a draw, and a prior
# rolled forward on its own draws (imagination) then compounds it: VDFD's first update on 500
# random matrix-game episodes met rollout features of 3.7e3 and a TD loss of 3.6e8, then NaN.
# Within the range (sigma from 0.007 to 2.7) nothing changes.
LOGVAR_RANGE = (-10.0, 2.0)


def bounded_logvar(logvar: jax.Array) -> jax.Array:
    return jnp.clip(logvar, *LOGVAR_RANGE)


class GaussianHead(nn.Module):
    """x [..., D] -> (mu, log sigma^2), each [..., latent_dim]: a ReLU MLP with two linear
    outputs (the log-variance clipped to LOGVAR_RANGE). The one Gaussian head of the library
    (encoders, priors, posteriors)."""

    latent_dim: int
    hidden: Sequence[int] = (128, 128)

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, name=f"fc{i}")(x))
        mu = nn.Dense(self.latent_dim, name="mu")(x)
        return mu, bounded_logvar(nn.Dense(self.latent_dim, name="logvar")(x))


def sample(key: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """Reparameterised draw z = mu + sigma * eps, eps ~ N(0, I)."""
    return mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape, mu.dtype)


def kl_std_normal(mu: jax.Array, logvar: jax.Array | None = None) -> jax.Array:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)); logvar None = unit variance (|mu|^2 / 2)."""
    if logvar is None:
        return 0.5 * jnp.sum(mu**2, axis=-1)
    return 0.5 * jnp.sum(jnp.exp(logvar) + mu**2 - 1.0 - logvar, axis=-1)


def kl_diag(mu_q: jax.Array, logvar_q: jax.Array, mu_p: jax.Array, logvar_p: jax.Array) -> jax.Array:
    """KL(N(mu_q, exp(logvar_q)) || N(mu_p, exp(logvar_p))) of diagonal Gaussians."""
    return jnp.sum(kl_diag_per_dim(mu_q, logvar_q, mu_p, logvar_p), axis=-1)


def kl_diag_per_dim(mu_q, logvar_q, mu_p, logvar_p) -> jax.Array:
    """The per-dimension terms of kl_diag (not summed)."""
    return (
        0.5 * (logvar_p - logvar_q)
        + (jnp.exp(logvar_q) + (mu_q - mu_p) ** 2) / (2.0 * jnp.exp(logvar_p))
        - 0.5
    )


def kl_balanced(mu_q, logvar_q, mu_p, logvar_p, alpha: float) -> jax.Array:
    """alpha KL(q || sg(p)) + (1 - alpha) KL(sg(q) || p), as MMSA (seed 001, section 4)
    and the MMSA/VDFD issues write it: alpha weighs the gradient that moves the
    posterior, 1 - alpha the one that moves the prior. (DreamerV2 puts alpha on the
    prior's side; with alpha = 0.8 the two readings differ: see specs/mmsa.md.) Its value
    equals kl_diag; only the gradients differ."""
    sg = jax.lax.stop_gradient
    moves_posterior = kl_diag(mu_q, logvar_q, sg(mu_p), sg(logvar_p))
    moves_prior = kl_diag(sg(mu_q), sg(logvar_q), mu_p, logvar_p)
    return alpha * moves_posterior + (1.0 - alpha) * moves_prior
