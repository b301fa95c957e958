"""GALA (Park et al. 2019, "Symmetric graph convolutional autoencoder"): a graph
auto-encoder whose encoder smooths node features over the graph and whose decoder
sharpens them back, over the agent axis of a batch of graphs.

Nodes are agents. `adj` [..., n, n] is an adjacency matrix (0/1 or bool, any leading
batch axes, or one [n, n] shared by the whole batch); its diagonal is ignored: self
loops are added by each filter's own form.

  encoder (Laplacian smoothing):  H' = act(D̃^{-1/2} Ã D̃^{-1/2} H W),  Ã = A + I,  D̃ = deg(Ã)
  decoder (Laplacian sharpening): H' = act(D̂^{-1/2} Â D̂^{-1/2} H W),  Â = 2I − A,  D̂ = D + 2I

The decoder is GALA's signed-graph form: the plain sharpening filter
2I − D^{-1/2} A D^{-1/2} has spectral radius above 1 and is unstable, so GALA
renormalises Â = 2I − A by its absolute degree D̂_ii = Σ_j |Â_ij| = 2 + d_i, which is
the spec's D̂ = D + 2I (the two forms agree). An isolated node (a dead agent) keeps its
own features under both filters: Ã_ii / D̃_ii = 1 and Â_ii / D̂_ii = 2 / 2 = 1.

On a complete graph A + I is all ones, so smoothing is J/n: one layer maps every node
to the graph mean, and sharpening maps a node-constant input to (3 − n)/(n + 1) of it
(zero at n = 3). GALA is made for sparse graphs; on a complete one the auto-encoder
keeps only what all nodes share.

Layers are linear without bias (exactly H W), ReLU between layers, the last one
linear. W acts on the feature axis only, so the parameter count does not depend on
the number of agents, and the same parameters run on any n. An empty graph (no edges)
makes both filters the identity: the blocks are then node-wise MLPs (VDFD's VDF-SV).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _edges(adj: jax.Array) -> jax.Array:
    """adj [..., n, n] -> float A with a zero diagonal."""
    n = adj.shape[-1]
    return adj.astype(jnp.float32) * (1.0 - jnp.eye(n, dtype=jnp.float32))


def smoothing(adj: jax.Array) -> jax.Array:
    """The encoder's filter D̃^{-1/2} (A + I) D̃^{-1/2}, [..., n, n]."""
    a = _edges(adj) + jnp.eye(adj.shape[-1], dtype=jnp.float32)
    inv_sqrt = a.sum(-1) ** -0.5  # degrees >= 1: the self loop
    return inv_sqrt[..., :, None] * a * inv_sqrt[..., None, :]


def sharpening(adj: jax.Array) -> jax.Array:
    """The decoder's filter D̂^{-1/2} (2I − A) D̂^{-1/2} with D̂ = D + 2I, [..., n, n]."""
    edges = _edges(adj)
    a = 2.0 * jnp.eye(adj.shape[-1], dtype=jnp.float32) - edges
    inv_sqrt = (edges.sum(-1) + 2.0) ** -0.5
    return inv_sqrt[..., :, None] * a * inv_sqrt[..., None, :]


def _propagate(features: Sequence[int], x: jax.Array, propagation: jax.Array) -> jax.Array:
    """x [..., n, D], propagation [..., n, n] -> [..., n, features[-1]]. Call inside nn.compact."""
    for i, f in enumerate(features):
        # The weights on rows flattened to 2-D: one plain product (and one for the
        # weights' gradient) where XLA's CPU backend runs the N-D form slower.
        y = nn.Dense(f, use_bias=False, name=f"layer{i}")(x.reshape(-1, x.shape[-1]))
        x = propagation @ y.reshape(*x.shape[:-1], f)
        if i < len(features) - 1:
            x = nn.relu(x)
    return x


class GALAEncoder(nn.Module):
    """x [..., n, D], adj [..., n, n] -> [..., n, features[-1]] by Laplacian smoothing."""

    features: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array, adj: jax.Array) -> jax.Array:
        return _propagate(self.features, x, smoothing(adj))


class GALADecoder(nn.Module):
    """x [..., n, D], adj [..., n, n] -> [..., n, features[-1]] by Laplacian sharpening."""

    features: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array, adj: jax.Array) -> jax.Array:
        return _propagate(self.features, x, sharpening(adj))


def reconstruction_loss(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """GALA's ½‖X − X̂‖² per node: x, x_hat [..., n, D] -> [..., n] (callers average)."""
    return 0.5 * jnp.sum((x - x_hat) ** 2, axis=-1)
