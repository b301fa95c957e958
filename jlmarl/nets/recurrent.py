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

from jlmarl.nets.rows import over_rows


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

        # The whole module over all steps, its GRU answering with the scanned h_t: the heads,
        # whatever their shape, run on them, and the trunk's own layers are dead code. A
        # module with `wide_heads` (a head per action) runs them in chunks of rows.
        def heads(h_in, inputs, hs):
            def scanned_states(call, args, kwargs, context):
                if isinstance(context.module, nn.GRUCell) and context.method_name == "__call__":
                    return hs, hs
                return call(*args, **kwargs)

            with nn.intercept_methods(scanned_states):
                return module.apply(params, h_in, inputs)[1]

        wide = getattr(module, "wide_heads", False)
        outs = over_rows(heads, 3, h_in, inputs, hs) if wide else heads(h_in, inputs, hs)
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
    g = p["gru"]
    w_i = jnp.concatenate([g["ir"]["kernel"], g["iz"]["kernel"], g["in"]["kernel"]], axis=-1)
    b_i = jnp.concatenate([g["ir"]["bias"], g["iz"]["bias"], g["in"]["bias"]], axis=-1)
    w_h = jnp.concatenate([g["hr"]["kernel"], g["hz"]["kernel"], g["hn"]["kernel"]], axis=-1)
    # [T, B, n, 3H]: every step's input side at once, time-major for the scan (transposing x,
    # a third of the width of the product, before it)
    pre = jnp.swapaxes(x, 0, 1) @ w_i
    h_in, hs = gru_scan(pre, h0, keep, w_h, g["hn"]["bias"], b_i)
    return jnp.swapaxes(h_in, 0, 1), jnp.swapaxes(hs, 0, 1)


def _gru_steps(pre, h0, keep, w_h, b_hn, b_i):
    """The scan of gru_scan, with every gate it computed: (h_in, hs, (r, z, n, c))."""
    hidden_dim = h0.shape[-1]

    def step(h, xs):
        gi, k = xs
        gi = gi + b_i
        h = h * k
        gh = h @ w_h  # [..., 3H]: the only product left inside the scan
        r = jax.nn.sigmoid(gi[..., :hidden_dim] + gh[..., :hidden_dim])
        z = jax.nn.sigmoid(gi[..., hidden_dim : 2 * hidden_dim] + gh[..., hidden_dim : 2 * hidden_dim])
        c = gh[..., 2 * hidden_dim :] + b_hn
        n = jnp.tanh(gi[..., 2 * hidden_dim :] + r * c)
        h_new = (1.0 - z) * n + z * h
        return h_new, (h, h_new, r, z, n, c)

    _, (h_in, hs, r, z, n, c) = jax.lax.scan(step, h0, (pre, keep))
    return h_in, hs, (r, z, n, c)


@jax.custom_vjp
def gru_scan(pre, h0, keep, w_h, b_hn, b_i):
    """Flax's GRUCell over time, time-first: pre [T, ..., 3H] (the input side W_i x of the r,
    z, n gates for every step), h0 [..., H], keep [T, ...] (0 zeroes the state before that
    step), w_h [H, 3H] (hr, hz, hn kernels), b_hn [H], b_i [3H] (the input side's biases,
    added inside the step's fused gate arithmetic instead of in a pass of their own over
    [T, ..., 3H] in memory; across processes the gain is within the machine's spread,
    benchmarks/results/update_ab_s6.json) -> (h entering each step, h_t), each [T, ..., H].

    Its gradient is written out (custom_vjp): the reverse scan carries only dh and stacks
    the gate gradients, and the hidden kernel's gradient is one product over all steps
    afterwards, instead of a small accumulation inside every step of the scan (the
    autodiff transpose), which made the backward pass ~4x the forward on CPU."""
    h_in, hs, _ = _gru_steps(pre, h0, keep, w_h, b_hn, b_i)
    return h_in, hs


def _gru_scan_fwd(pre, h0, keep, w_h, b_hn, b_i):
    h_in, hs, gates = _gru_steps(pre, h0, keep, w_h, b_hn, b_i)
    return (h_in, hs), (h_in, gates, h0, keep, w_h)


def _gru_scan_bwd(residuals, cotangents):
    h_in, (r, z, n, c), h0, keep, w_h = residuals
    d_h_in, d_hs = cotangents
    w_h_t = w_h.T

    def back(dh, xs):
        d_in, d_out, h, r, z, n, c, k = xs
        dh = dh + d_out  # h_t reaches the loss through hs_t and through step t+1
        dz = dh * (h - n) * z * (1.0 - z)
        dn = dh * (1.0 - z) * (1.0 - n * n)
        dr = dn * c * r * (1.0 - r)
        d_gh = jnp.concatenate([dr, dz, dn * r], axis=-1)
        d_h = dh * z + d_in + d_gh @ w_h_t
        return d_h * k, (jnp.concatenate([dr, dz, dn], axis=-1), d_gh)

    xs = (d_h_in, d_hs, h_in, r, z, n, c, keep)
    d_h0, (d_pre, d_gh) = jax.lax.scan(back, jnp.zeros_like(h0), xs, reverse=True)
    hidden_dim = h0.shape[-1]
    flat_h, flat_g = h_in.reshape(-1, hidden_dim), d_gh.reshape(-1, 3 * hidden_dim)
    d_w_h = flat_h.T @ flat_g  # one product over every step and row
    d_b_hn = flat_g[:, 2 * hidden_dim :].sum(0)
    d_b_i = d_pre.reshape(-1, 3 * hidden_dim).sum(0)
    return d_pre, d_h0, jnp.zeros_like(keep), d_w_h, d_b_hn, d_b_i


gru_scan.defvjp(_gru_scan_fwd, _gru_scan_bwd)
