"""The one MLP of the library: ReLU (or a given activation) between layers, a linear output."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax


class MLP(nn.Module):
    """x [..., D] -> [..., features[-1]]; features = hidden widths, then the output size.
    activation: between layers (ReLU; SALE's encoders use ELU, as TD7 does)."""

    features: Sequence[int]
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for f in self.features[:-1]:
            x = self.activation(nn.Dense(f)(x))
        return nn.Dense(self.features[-1])(x)
