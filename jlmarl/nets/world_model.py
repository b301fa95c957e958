"""Pieces every imagination-based learner shares (MMSA, VDFD): rolling a learned model
forward, the rollout feature the mixer reads, the mixer's input, and the model's
k-step prediction errors beside the "nothing changes" baseline.

Shapes: B episodes, T+1 observations, D features; `horizon` = j imagined steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jlmarl.nets.gaussian import GaussianHead, sample
from jlmarl.nets.mlp import MLP
from jlmarl.nets.sale import SaleEncoder, normalizer


def imagine(step: Callable[[Any], tuple[Any, jax.Array]], start: Any, horizon: int) -> jax.Array:
    """Rolls a learned model forward: carry_{k+1}, out_k = step(carry_k) for k < horizon
    (a lax.scan). Returns the outputs stacked time-first: [horizon, ...]."""
    _, outs = jax.lax.scan(lambda carry, _: step(carry), start, length=horizon)
    return outs


def actions_ahead(actions: jax.Array, horizon: int) -> jax.Array:
    """The recorded action k steps after every start t, for k < horizon: actions int
    [B, T, ...] -> [horizon, B, T+1, ...], out[k][:, t] = a_{t+k} (0 past the last action;
    predictions from there are past the episode's end, which prediction_errors leaves out)."""
    b, t, *rest = actions.shape
    padded = jnp.concatenate([actions, jnp.zeros((b, horizon, *rest), actions.dtype)], axis=1)
    t1 = t + 1
    return jnp.stack([padded[:, k : k + t1] for k in range(horizon)])


def rollout_feature(first: jax.Array, imagined: jax.Array) -> jax.Array:
    """concat(x_t, x̂_{t+1}, ..., x̂_{t+j}) on the feature axis: first [..., D],
    imagined [j, ..., D] -> [..., (j + 1) D]."""
    return jnp.concatenate([first, *imagined], axis=-1)


def mixer_inputs(state: jax.Array, rollout: jax.Array, global_state: bool = True) -> jax.Array:
    """What the mixer is conditioned on: [s_t, sg(rollout_t)] (or sg(rollout_t) alone without
    the global state, MMSA's No-GS). The TD loss never trains the world model through it.
    state [B, T+1, S], rollout [B, T+1, R] -> [B, T+1, S + R] (or R)."""
    rollout = jax.lax.stop_gradient(rollout)
    return jnp.concatenate([state, rollout], axis=-1) if global_state else rollout


def prediction_errors(predicted: jax.Array, real: jax.Array, valid: jax.Array) -> dict[str, jax.Array]:
    """Mean squared error of k-step predictions beside two guesses that know nothing.

    predicted [K, B, T, D]: predicted[k - 1, :, t] is the model's guess of real[:, t + k]
    made from step t; real [B, T, D]; valid bool [B, T] marks real steps. For each k
    = 1..K, averages over the (b, t) whose t and t + k are both real: `model_k` (the
    prediction's error), `still_k` (the error of guessing real[:, t + k] = real[:, t]) and
    `mean_k` (of guessing the batch's mean of real[:, t + k]: the best constant, which a
    collapsed decoder reaches; where values jump between steps it beats `still_k`).
    Squared errors are summed over D, then averaged."""
    out = {}
    t_len = real.shape[1]
    for k in range(1, predicted.shape[0] + 1):
        if k >= t_len:
            break
        both = (valid[:, :-k] & valid[:, k:]).astype(real.dtype)
        count = jnp.maximum(both.sum(), 1.0)
        target = real[:, k:]
        model = ((predicted[k - 1, :, :-k] - target) ** 2).sum(-1)
        still = ((real[:, :-k] - target) ** 2).sum(-1)
        centre = (target * both[..., None]).sum((0, 1)) / count
        spread = ((target - centre) ** 2).sum(-1)
        out[f"model_{k}"] = (model * both).sum() / count
        out[f"still_{k}"] = (still * both).sum() / count
        out[f"mean_{k}"] = (spread * both).sum() / count
    return out


class MmsaWorldModel(nn.Module):
    """MMSA's world model on the agents' joint hidden state h = concat_i h_i (seed 001, 4.3).

    Latent state ŝ [..., d] (d = 16 per agent x n). Blocks, each a method:
      infer(h)          the posterior q(ŝ_t | h_t): (mu, logvar)
      embed(ŝ, â)       VAE-1's input e_t: with SALE (z^{sa}, z^s, phi^{sa}) of ŝ and the
                        joint action's one-hots â [..., n A]; without SALE [ŝ, â]
      target(ŝ, â)      what VAE-1's decoder predicts for the next step: embed(ŝ, â) with
                        SALE, ŝ without
      predict(e, key)   VAE-1: its encoder is the learned prior p(ŝ_{t+1} | e_t) (mu,
                        logvar); its decoder maps a latent draw (the mean when key is None)
                        to the predicted next embeddings ê_{t+1}
      next_state(ê)     ŝ_{t+1} := the predicted z^s_{t+1} (ŝ_{t+1} itself without SALE)
      decode_hidden(ê)  VAE-2's decoder: predicted embeddings -> h_{t+1} [..., n H] (VAE-2's
                        encoder is the posterior: together the VAE whose latent is ŝ)
      policy(ŝ)         per-agent logits [..., n, A] of pi(z^s, phi^s), phi^s = Linear(ŝ),
                        reading sg(z^s) (decoupled from the SALE encoders, as in TD7)
      state_embedding(ŝ) z^s (ŝ without SALE)
    """

    n_agents: int
    n_actions: int
    latent_dim: int
    hidden_dim: int  # the agents' GRU width H
    width: int = 64
    sale: bool = True
    norm: str = "avg_l1"
    decoder_width: int | None = None  # VAE-2's decoder (None: width)

    def setup(self):
        d, n, a = self.latent_dim, self.n_agents, self.n_actions
        self.posterior = GaussianHead(d, (self.width,))
        if self.sale:
            self.state_sale = SaleEncoder(d, self.width, self.norm)
            self.phi_sa = nn.Dense(d)
        self.phi_s = nn.Dense(d)
        self.prior = GaussianHead(d, (self.width,))
        self.transition = MLP((self.width, 3 * d if self.sale else d))
        self.hidden_decoder = MLP((self.decoder_width or self.width, n * self.hidden_dim))
        self.policy_head = MLP((self.width, n * a))

    def __call__(self, h: jax.Array, actions: jax.Array) -> jax.Array:
        """Touches every block (for init): h [..., n H], actions one-hot [..., n A]."""
        mu, _ = self.infer(h)
        e = self.embed(mu, actions)
        _, _, pred = self.predict(e, None)
        return self.decode_hidden(pred).sum() + self.policy(mu).sum() + self.target(mu, actions).sum()

    def infer(self, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.posterior(h)

    def state_embedding(self, s: jax.Array) -> jax.Array:
        return self.state_sale.embed_state(s) if self.sale else s

    def embed(self, s: jax.Array, actions: jax.Array) -> jax.Array:
        if not self.sale:
            return jnp.concatenate([s, actions], axis=-1)
        zs = self.state_sale.embed_state(s)
        zsa = self.state_sale.embed_action(zs, actions)
        phi = normalizer(self.norm)(self.phi_sa(jnp.concatenate([s, actions], axis=-1)))
        return jnp.concatenate([zsa, zs, phi], axis=-1)  # [..., 3d]

    def target(self, s: jax.Array, actions: jax.Array) -> jax.Array:
        return self.embed(s, actions) if self.sale else s

    def predict(self, e: jax.Array, key: jax.Array | None) -> tuple[jax.Array, jax.Array, jax.Array]:
        mu, logvar = self.prior(e)
        latent = mu if key is None else sample(key, mu, logvar)
        return mu, logvar, self.transition(latent)

    def next_state(self, pred: jax.Array) -> jax.Array:
        d = self.latent_dim
        return pred[..., d : 2 * d] if self.sale else pred

    def decode_hidden(self, pred: jax.Array) -> jax.Array:
        return self.hidden_decoder(pred)

    def policy(self, s: jax.Array) -> jax.Array:
        x = self.phi_s(s)
        if self.sale:
            x = jnp.concatenate([jax.lax.stop_gradient(self.state_sale.embed_state(s)), x], axis=-1)
        return self.policy_head(x).reshape(*s.shape[:-1], self.n_agents, self.n_actions)
