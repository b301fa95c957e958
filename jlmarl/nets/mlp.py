"""The one MLP of the library: ReLU (or a given activation) between layers, a linear output."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """x [..., D] -> [..., features[-1]]; features = hidden widths, then the output size.
    activation: between layers (ReLU; SALE's encoders use ELU, as TD7 does).
    torch_init: PyTorch's nn.Linear initialisation (weights and biases uniform in
    +-1/sqrt(fan_in)) instead of Flax's (LeCun normal, zero biases), for blocks whose
    paper's behaviour depends on it (SALE: with zero biases an all-zero input gives f = 0,
    and AvgL1Norm's division by max(mean|f|, 1e-8) a gradient factor of 1e8)."""

    features: Sequence[int]
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    torch_init: bool = False

    def dense(self, features: int, fan_in: int) -> nn.Dense:
        if not self.torch_init:
            return nn.Dense(features)
        bound = 1.0 / fan_in**0.5

        def uniform(key, shape, dtype=jnp.float32):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        return nn.Dense(features, kernel_init=uniform, bias_init=uniform)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for f in self.features[:-1]:
            x = self.activation(self.dense(f, x.shape[-1])(x))
        return self.dense(self.features[-1], x.shape[-1])(x)
