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


def trunk(
    hidden: jax.Array,
    inputs: jax.Array,
    hidden_dim: int,
    recurrent_init=None,
    layers: int = 1,
    layer_norm: bool = False,
) -> jax.Array:
    """hidden [..., H], inputs [..., D] -> h_t [..., H]. Call inside an nn.compact method.

    recurrent_init: the GRU's hidden-to-hidden kernel initialiser (None = Flax's
    orthogonal default). layers: Dense (-> LayerNorm with layer_norm) -> ReLU blocks
    before the GRU (`fc1`, `ln1`, `fc2`, ...; PQN's agent has two, normalised)."""
    x = inputs
    for i in range(1, layers + 1):
        x = nn.Dense(hidden_dim, name=f"fc{i}")(x)
        x = nn.relu(nn.LayerNorm(name=f"ln{i}")(x) if layer_norm else x)
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


def unroll(
    module: nn.Module,
    params,
    inputs: jax.Array,
    with_hidden: bool = False,
    h0: jax.Array | None = None,
    resets: jax.Array | None = None,
):
    """Runs a recurrent module (hidden, x) -> (hidden, out) over time.

    inputs [B, T, n, D] -> outputs [B, T, n, out] (time is the scanned axis); with
    with_hidden also the hidden states h_t [B, T, n, H]. `module.hidden_dim` sizes the state.
    h0 [B, n, H]: the state before the first step (default zeros); resets bool [B, T]: the
    state is zeroed before step t where set (a new episode starts inside a segment).

    Modules built on `trunk` (they define `trunk_inputs`) take the fast path: everything
    that does not depend on the hidden state -- fc1 and the GRU's input-side gate products
    -- is one batched product over all steps, the scan keeps only the hidden-side product,
    and the heads run once over all steps on the scanned states. Same numbers up to
    float rounding (tests/test_nets.py)."""
    b, t, n, _ = inputs.shape
    if h0 is None:
        h0 = jnp.zeros((b, n, module.hidden_dim), inputs.dtype)
    keep = jnp.ones((b, t), inputs.dtype) if resets is None else 1.0 - resets.astype(inputs.dtype)
    keep = jnp.swapaxes(keep, 0, 1)[..., None, None]  # [T, B, 1, 1]
    if hasattr(module, "trunk_inputs"):
        layers = getattr(module, "layers", 1)
        h_in, hs = trunk_states(params["params"], module.trunk_inputs(inputs), h0, keep, layers)

        # The whole module once over all steps, its GRU answering with the scanned h_t: the
        # heads, whatever their shape, run on them, and the trunk's own layers are dead code.
        def scanned_states(call, args, kwargs, context):
            if isinstance(context.module, nn.GRUCell) and context.method_name == "__call__":
                return hs, hs
            return call(*args, **kwargs)

        with nn.intercept_methods(scanned_states):
            _, outs = module.apply(params, h_in, inputs)
        return (hs, outs) if with_hidden else outs

    def step(h, xs):
        x, k = xs
        h, out = module.apply(params, h * k, x)
        return h, (h, out)

    _, (hs, outs) = jax.lax.scan(step, h0, (jnp.swapaxes(inputs, 0, 1), keep))
    outs = jnp.swapaxes(outs, 0, 1)
    return (jnp.swapaxes(hs, 0, 1), outs) if with_hidden else outs


def _dense(p, x):
    y = x @ p["kernel"]
    return y + p["bias"] if "bias" in p else y


def _layer_norm(p, x, eps: float = 1e-6):
    """Flax's LayerNorm over the last axis (its default epsilon)."""
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]


def trunk_states(p, x: jax.Array, h0: jax.Array, keep: jax.Array, layers: int):
    """The trunk's states for inputs x [B, T, n, D] from h0 [B, n, H], zeroed where keep
    [T, B, 1, 1] is 0: (h entering each step, h_t), each [B, T, n, H]. Computed as Flax's
    GRUCell does (r, z gates; n = tanh(W_in x + r (W_hn h + b_hn))), with the input side
    batched over time."""
    for i in range(1, layers + 1):
        x = _dense(p[f"fc{i}"], x)
        x = jax.nn.relu(_layer_norm(p[f"ln{i}"], x) if f"ln{i}" in p else x)
    hidden_dim = h0.shape[-1]
    g = p["gru"]
    w_i = jnp.concatenate([g["ir"]["kernel"], g["iz"]["kernel"], g["in"]["kernel"]], axis=-1)
    b_i = jnp.concatenate([g["ir"]["bias"], g["iz"]["bias"], g["in"]["bias"]], axis=-1)
    w_h = jnp.concatenate([g["hr"]["kernel"], g["hz"]["kernel"], g["hn"]["kernel"]], axis=-1)
    pre = jnp.swapaxes(x @ w_i + b_i, 0, 1)  # [T, B, n, 3H]: every step's input side at once

    def step(h, xs):
        gi, k = xs
        h = h * k
        h_in = h
        gh = h @ w_h  # [B, n, 3H]: the only product left inside the scan
        r = jax.nn.sigmoid(gi[..., :hidden_dim] + gh[..., :hidden_dim])
        z = jax.nn.sigmoid(gi[..., hidden_dim : 2 * hidden_dim] + gh[..., hidden_dim : 2 * hidden_dim])
        n = jnp.tanh(gi[..., 2 * hidden_dim :] + r * (gh[..., 2 * hidden_dim :] + g["hn"]["bias"]))
        h = (1.0 - z) * n + z * h
        return h, (h_in, h)

    _, (h_in, hs) = jax.lax.scan(step, h0, (pre, keep))
    return jnp.swapaxes(h_in, 0, 1), jnp.swapaxes(hs, 0, 1)
