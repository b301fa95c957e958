"""The recurrent trunk every agent and recurrent critic is built on, and its unroll.

The trunk is fc (ReLU) -> GRU over per-agent inputs; the GRU's new hidden state h_t
is also its output, so heads (Q, policy, Gaussian, message) read h_t and a method
that needs h_t itself (a world model over the agents' histories) gets it from the
same call. `trunk` creates its layers in the scope of the module that calls it
(parameters `fc1`, `gru`), so agents built on it keep PyMARL's flat parameter tree; a
module built on it declares `trunk_inputs(inputs)` (the part of its input the trunk
reads) and `unroll` then batches all the work that does not depend on the hidden state.
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

    def trunk_inputs(self, inputs: jax.Array) -> jax.Array:
        return inputs

    @nn.compact
    def __call__(self, hidden: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        hidden = trunk(hidden, inputs, self.hidden_dim, nn.initializers.lecun_normal())
        return hidden, hidden


def unroll(module: nn.Module, params, inputs: jax.Array, with_hidden: bool = False):
    """Runs a recurrent module (hidden, x) -> (hidden, out) over time from a zero state.

    inputs [B, T, n, D] -> outputs [B, T, n, out] (time is the scanned axis); with
    with_hidden also the hidden states h_t [B, T, n, H]. `module.hidden_dim` sizes the state.

    Modules built on `trunk` (they define `trunk_inputs`) take the fast path: everything
    that does not depend on the hidden state -- fc1 and the GRU's input-side gate products
    -- is one batched product over all steps, the scan keeps only the hidden-side product,
    and the heads run once over all steps from the scanned states. Same numbers up to
    float rounding (tests/test_nets.py)."""
    if hasattr(module, "trunk_inputs"):
        hs = _trunk_states(params["params"], module.trunk_inputs(inputs), module.hidden_dim)
        h_prev = jnp.concatenate([jnp.zeros_like(hs[:, :1]), hs[:, :-1]], axis=1)
        # One step of the whole module from every h_{t-1} at once: its heads (and the GRU
        # step again, as one big batched product, so heads of any shape need no special case).
        _, outs = module.apply(params, h_prev, inputs)
        return (hs, outs) if with_hidden else outs
    b, _, n, _ = inputs.shape

    def step(h, x):
        h, out = module.apply(params, h, x)
        return h, (h, out)

    h0 = jnp.zeros((b, n, module.hidden_dim), inputs.dtype)
    _, (hs, outs) = jax.lax.scan(step, h0, jnp.swapaxes(inputs, 0, 1))
    outs = jnp.swapaxes(outs, 0, 1)
    return (jnp.swapaxes(hs, 0, 1), outs) if with_hidden else outs


def _dense(p, x):
    y = x @ p["kernel"]
    return y + p["bias"] if "bias" in p else y


def _trunk_states(p, x: jax.Array, hidden_dim: int) -> jax.Array:
    """The trunk's hidden states h_t [B, T, n, H] for inputs x [B, T, n, D], computed as
    Flax's GRUCell does (r, z gates; n = tanh(W_in x + r (W_hn h + b_hn))), with the
    input side batched over time."""
    x = jax.nn.relu(_dense(p["fc1"], x))
    g = p["gru"]
    w_i = jnp.concatenate([g["ir"]["kernel"], g["iz"]["kernel"], g["in"]["kernel"]], axis=-1)
    b_i = jnp.concatenate([g["ir"]["bias"], g["iz"]["bias"], g["in"]["bias"]], axis=-1)
    w_h = jnp.concatenate([g["hr"]["kernel"], g["hz"]["kernel"], g["hn"]["kernel"]], axis=-1)
    pre = jnp.swapaxes(x @ w_i + b_i, 0, 1)  # [T, B, n, 3H]: every step's input side at once

    def step(h, gi):
        gh = h @ w_h  # [B, n, 3H]: the only product left inside the scan
        r = jax.nn.sigmoid(gi[..., :hidden_dim] + gh[..., :hidden_dim])
        z = jax.nn.sigmoid(gi[..., hidden_dim : 2 * hidden_dim] + gh[..., hidden_dim : 2 * hidden_dim])
        n = jnp.tanh(gi[..., 2 * hidden_dim :] + r * (gh[..., 2 * hidden_dim :] + g["hn"]["bias"]))
        h = (1.0 - z) * n + z * h
        return h, h

    h0 = jnp.zeros((*pre.shape[1:-1], hidden_dim), pre.dtype)
    _, hs = jax.lax.scan(step, h0, pre)
    return jnp.swapaxes(hs, 0, 1)
