"""State-action learned embeddings (SALE, Fujimoto et al. 2023, TD7) as MMSA uses them.

An encoder pair learns how actions change what is observed:
    z^s  = N(f(x))          the state (or observation) embedding, N the normaliser
    z^sa = g([z^s, a])      the state-action embedding, trained so that
                            g(f(x_t), a_t) ~ sg(f(x_{t+1}))  (the SALE loss, in algos/mmsa.py)
f and g are 2-layer ELU MLPs (TD7's). MMSA uses one pair at the observation level (per
agent, shared parameters, read by the value function through a frozen copy) and one at
the level of the world model's latent state (with the joint action).

`SaleAgent` is the observation-level value function: Q_i(a) = MLP([h_i, z^o, z^{oa}(a),
phi^{oa}(a)]) for every action a, phi^{oa}(a) = N(Linear([o_i, onehot(a)])) being the
Q-network's own input layer (TD7's), trained by the TD loss like the rest of the agent.

The normaliser is a choice (MMSA's design study, Figure 11): AvgL1Norm (the default),
a parameter-free layer norm, or none.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jlmarl.nets.mlp import MLP, OneHotTailDense, elu
from jlmarl.nets.recurrent import trunk
from jlmarl.nets.rows import over_rows


def avg_l1_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """x / max(mean(|x|), eps) over the last axis (TD7's AvgL1Norm; the mean absolute
    entry of the result is 1)."""
    return x / jnp.maximum(jnp.mean(jnp.abs(x), axis=-1, keepdims=True), eps)


def layer_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """(x - mean) / sqrt(var + eps) over the last axis, without learned scale or bias
    (the design study's alternative; parameter-free so that the choice changes no tree)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(jnp.var(x, axis=-1, keepdims=True) + eps)


NORMALIZERS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "avg_l1": avg_l1_norm,
    "layer_norm": layer_norm,
    "none": lambda x: x,
}


def normalizer(name: str) -> Callable[[jax.Array], jax.Array]:
    if name not in NORMALIZERS:
        raise ValueError(f"mmsa.normalizer must be one of {', '.join(NORMALIZERS)}, got {name!r}")
    return NORMALIZERS[name]


class SaleEncoder(nn.Module):
    """f: x [..., D] -> z^s [..., embed_dim] (normalised); g: ([z^s, a]) -> z^sa [..., embed_dim].

    `a` is a one-hot action (or the concatenated one-hots of a joint action)."""

    embed_dim: int
    hidden: int = 64
    norm: str = "avg_l1"

    def setup(self):
        # PyTorch's initialisation, as TD7 and MMSA have it (MLP.torch_init says why).
        self.f = MLP((self.hidden, self.hidden, self.embed_dim), activation=elu, torch_init=True)
        self.g = MLP((self.hidden, self.hidden, self.embed_dim), activation=elu, torch_init=True)

    def __call__(self, x: jax.Array, a: jax.Array) -> tuple[jax.Array, jax.Array]:
        zs = self.embed_state(x)
        return zs, self.embed_action(zs, a)

    def embed_state(self, x: jax.Array) -> jax.Array:
        return normalizer(self.norm)(self.f(x))

    def embed_action(self, zs: jax.Array, a: jax.Array) -> jax.Array:
        return self.g(jnp.concatenate([zs, a], axis=-1))

    def embed_every_action(self, zs: jax.Array, n_actions: int) -> jax.Array:
        """z^sa of every action: zs [..., E] -> [..., n_actions, E] (g's first layer reads
        zs once, not once per action)."""
        return self.g(zs, one_hot_tail=n_actions)


def sale_features(encoder: SaleEncoder, params, obs: jax.Array, n_actions: int) -> jax.Array:
    """What the value function reads from the (frozen) observation encoders, flat so that it
    can ride along the agent's per-step inputs: obs [..., O] -> [z^o, z^{oa}(a) for every a]
    [..., E (1 + n_actions)]. Constant for the TD gradient.

    Computed over cache-sized chunks of rows (nets/rows.py): g's every-action intermediates
    are [rows, n_actions, hidden], 45 MB for a 128-episode smax_3m batch; in chunks this
    takes 50 ms instead of 85 (medians; best 27 instead of 66;
    benchmarks/results/row_chunks_sale_features.json)."""

    def features(x):
        zo = encoder.apply(params, x, method=SaleEncoder.embed_state)  # [..., E]
        zoa = encoder.apply(params, zo, n_actions, method=SaleEncoder.embed_every_action)  # [..., A, E]
        return jnp.concatenate([zo, zoa.reshape(*zoa.shape[:-2], -1)], axis=-1)

    return jax.lax.stop_gradient(over_rows(features, obs.ndim - 1, obs))


def sale_features_at(encoder: SaleEncoder, params, obs: jax.Array, actions: jax.Array, n_actions: int):
    """sale_features for one given action per row, with its one-hot, as
    SaleAgent(candidates=1) reads them: obs [..., O], actions int [...] ->
    [z^o, z^{oa}(a), onehot(a)] [..., 2 E + n_actions]. Constant for the TD gradient."""
    onehot = jax.nn.one_hot(actions, n_actions, dtype=obs.dtype)
    zo = encoder.apply(params, obs, method=SaleEncoder.embed_state)
    zoa = encoder.apply(params, zo, onehot, method=SaleEncoder.embed_action)
    return jax.lax.stop_gradient(jnp.concatenate([zo, zoa, onehot], axis=-1))


class SaleAgent(nn.Module):
    """The SALE-augmented recurrent agent: (hidden [..., H], inputs) -> (h_t [..., H], q [..., A]).

    inputs = [o, onehot(last action), onehot(id), z^o, z^{oa}(a) for every a] (the last
    two from `sale_features`); the GRU trunk reads the first D = obs_dim + A + n entries.
    Q_i(a) = W_a h + b_a + MLP([h, z^o, z^{oa}(a), phi^{oa}(a)]) with one hidden layer of
    q_hidden: the conventional recurrent agent's per-action output on h (PyMARL's `fc2`),
    with the SALE features "provided alongside" it (MMSA section 4.2). history_head=False drops
    W_a h: Q from the SALE head alone, our first reading, under which the action reaches Q
    only through z^{oa} and phi^{oa} and Q barely depends on it (on LBF it learned nothing).
    The MLP's first layer is applied as a Dense on [h, z^o] plus a Dense on
    [z^{oa}(a), phi^{oa}(a)] (the same map as one Dense on the concatenation), so the
    per-action work is small.

    candidates=K > 0: the same network (the same parameters) evaluated at K given actions
    only, inputs = [o, onehot(last action), onehot(id), z^o, z^{oa}(a_k) for each k,
    onehot(a_k) for each k] -> q [..., K]. The double-Q target needs the target network
    at the online greedy action alone: a ninth of its per-action work on smax_3m."""

    hidden_dim: int
    n_actions: int
    obs_dim: int
    embed_dim: int
    q_hidden: int = 64
    norm: str = "avg_l1"
    candidates: int = 0
    history_head: bool = True

    wide_heads = True  # unroll runs the per-action head in chunks of rows (nets/rows.py)

    def feature_width(self) -> int:
        k = self.candidates or self.n_actions
        return self.embed_dim * (1 + k) + self.candidates * self.n_actions

    def trunk_inputs(self, inputs: jax.Array) -> jax.Array:
        return inputs[..., : inputs.shape[-1] - self.feature_width()]

    @nn.compact
    def __call__(self, hidden: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        a, e = self.n_actions, self.embed_dim
        k = self.candidates or a
        x = self.trunk_inputs(inputs)
        feats = inputs[..., x.shape[-1] :]
        lead = feats.shape[:-1]
        zo, zoa = feats[..., :e], feats[..., e : e * (1 + k)].reshape(*lead, k, e)  # [.., E], [.., K, E]
        actions = feats[..., e * (1 + k) :].reshape(*lead, k, a) if self.candidates else None
        hidden = trunk(hidden, x, self.hidden_dim)
        phi = OneHotTailDense(e, a, name="phi")(x[..., : self.obs_dim], actions)
        phi = normalizer(self.norm)(phi)  # [.., K, E]
        shared = nn.Dense(self.q_hidden, name="q_in")(jnp.concatenate([hidden, zo], -1))  # [.., Hq]
        per_action = nn.Dense(self.q_hidden, use_bias=False, name="q_in_action")(
            jnp.concatenate([zoa, phi], -1)
        )  # [.., K, Hq]
        q = nn.Dense(1, name="q_out")(nn.relu(shared[..., None, :] + per_action))[..., 0]
        if self.history_head:
            w_h = nn.Dense(a, name="fc2")(hidden)  # [.., A]
            q = q + ((actions * w_h[..., None, :]).sum(-1) if self.candidates else w_h)
        return hidden, q
