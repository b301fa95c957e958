"""Gaussian encoders and decoders for latent-state models (their sampling and KLs
are in jlmarl.nets.gaussian).

`GaussianEncoder` maps an input to a diagonal Gaussian (mean, log-variance);
`MLPDecoder` maps a latent back to the input space. Squared errors are summed over
feature dims (the papers' ||.||^2), so callers average them over samples themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class GaussianEncoder(nn.Module):
    """MLP (ReLU) -> (mu, log sigma^2), each [..., latent_dim]."""

    latent_dim: int
    hidden: Sequence[int] = (128, 128)

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, name=f"fc{i}")(x))
        return nn.Dense(self.latent_dim, name="mu")(x), nn.Dense(self.latent_dim, name="logvar")(x)


class MLPDecoder(nn.Module):
    """MLP (ReLU) latent [..., d] -> reconstruction [..., out_dim] (linear output)."""

    out_dim: int
    hidden: Sequence[int] = (128, 128)

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        for i, width in enumerate(self.hidden):
            z = nn.relu(nn.Dense(width, name=f"fc{i}")(z))
        return nn.Dense(self.out_dim, name="out")(z)


def squared_error(x: jax.Array, y: jax.Array) -> jax.Array:
    """||x - y||^2 over the last axis."""
    return jnp.sum((x - y) ** 2, axis=-1)
