"""The recurrent trunk every agent and recurrent critic is built on, and its unroll.

The trunk is fc (ReLU) -> GRU over per-agent inputs; the GRU's new hidden state h_t
is also its output, so heads (Q, policy, Gaussian, message) read h_t and a method
that needs h_t itself (a world model over the agents' histories) gets it from the
same call. `trunk` creates its layers in the scope of the module that calls it
(parameters `fc1`, `gru`), so agents built on it keep PyMARL's flat parameter tree.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def trunk(hidden: jax.Array, inputs: jax.Array, hidden_dim: int, recurrent_init=None) -> jax.Array:
    """hidden [..., H], inputs [..., D] -> h_t [..., H]. Call inside an nn.compact method.

    recurrent_init: the GRU's hidden-to-hidden kernel initialiser (None = Flax's
    orthogonal default)."""
    x = nn.relu(nn.Dense(hidden_dim, name="fc1")(inputs))
    kwargs = {} if recurrent_init is None else {"recurrent_kernel_init": recurrent_init}
    hidden, _ = nn.GRUCell(hidden_dim, name="gru", **kwargs)(hidden, x)
    return hidden


class RecurrentTrunk(nn.Module):
    """The trunk alone: hidden [..., H], inputs [..., D] -> (hidden, features = hidden).

    The recurrent kernels start LeCun-normal rather than Flax's default orthogonal: on
    our jax/XLA CPU build, a program that initialises two orthogonal GRUs vmapped over
    seeds (LSF-SAC's critic trunk next to the actor's GRU) hangs in XLA's runtime."""

    hidden_dim: int

    @nn.compact
    def __call__(self, hidden: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        hidden = trunk(hidden, inputs, self.hidden_dim, nn.initializers.lecun_normal())
        return hidden, hidden


def unroll(module: nn.Module, params, inputs: jax.Array, with_hidden: bool = False):
    """Runs a recurrent module (hidden, x) -> (hidden, out) over time from a zero state.

    inputs [B, T, n, D] -> outputs [B, T, n, out] (time is the scanned axis); with
    with_hidden also the hidden states h_t [B, T, n, H]. `module.hidden_dim` sizes the state."""
    b, _, n, _ = inputs.shape

    def step(h, x):
        h, out = module.apply(params, h, x)
        return h, (h, out)

    h0 = jnp.zeros((b, n, module.hidden_dim), inputs.dtype)
    _, (hs, outs) = jax.lax.scan(step, h0, jnp.swapaxes(inputs, 0, 1))
    outs = jnp.swapaxes(outs, 0, 1)
    return (jnp.swapaxes(hs, 0, 1), outs) if with_hidden else outs
