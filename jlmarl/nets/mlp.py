"""The one MLP of the library: ReLU (or a given activation) between layers, a linear output."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def elu(x: jax.Array) -> jax.Array:
    """ELU (alpha 1) with exp(x) - 1 on the negative side instead of expm1: XLA's CPU
    expm1 is about 3x slower than its exp, and the two differ by float32 rounding
    (< 2e-7 absolute). The inner where keeps the exp finite on the positive side and the
    gradient at 0 equal to 1, as jax.nn.elu's."""
    return jnp.where(x > 0, x, jnp.exp(jnp.where(x > 0, 0.0, x)) - 1.0)


class OneHotTailDense(nn.Module):
    """Dense([x, onehot(a)]) without building the concatenation: a one-hot picks a kernel
    row, so the product over x is made once per row of x, not once per action.

    x [..., D] -> [..., K, features]: with one_hots [..., K, n] for K given one-hots, and
    for every action (K = n, the identity's rows) when one_hots is None. The parameters
    are a Dense's over D + n inputs (same names, shapes and initialisers), so a network
    can call it and a plain Dense on [x, onehot] interchangeably."""

    features: int
    n: int
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array, one_hots: jax.Array | None = None) -> jax.Array:
        d = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (d + self.n, self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        rows = kernel[d:] if one_hots is None else one_hots @ kernel[d:]  # [(.., K,) n|K, F]
        return (x @ kernel[:d] + bias)[..., None, :] + rows


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

    def inits(self, fan_in: int) -> dict:
        if not self.torch_init:
            return {}
        bound = 1.0 / fan_in**0.5

        def uniform(key, shape, dtype=jnp.float32):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        return {"kernel_init": uniform, "bias_init": uniform}

    @nn.compact
    def __call__(self, x: jax.Array, one_hot_tail: int = 0) -> jax.Array:
        """one_hot_tail=n: x is the input without its last n entries, a one-hot, and the
        output is given for each of the n one-hots: [..., D - n] -> [..., n, out]
        (OneHotTailDense as the first layer)."""
        for i, f in enumerate(self.features):
            if i == 0 and one_hot_tail:
                fan_in = x.shape[-1] + one_hot_tail
                x = OneHotTailDense(f, one_hot_tail, **self.inits(fan_in), name="Dense_0")(x)
            else:
                x = nn.Dense(f, **self.inits(x.shape[-1]), name=f"Dense_{i}")(x)
            if i < len(self.features) - 1:
                x = self.activation(x)
        return x
