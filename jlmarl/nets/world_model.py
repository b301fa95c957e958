"""Pieces every imagination-based learner shares (MMSA, VDFD): rolling a learned model
forward, the rollout feature the mixer reads, the mixer's input, and the model's
k-step prediction errors beside the "nothing changes" baseline.

Shapes: B episodes, T+1 observations, D features; `horizon` = j imagined steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def imagine(step: Callable[[Any], tuple[Any, jax.Array]], start: Any, horizon: int) -> jax.Array:
    """Rolls a learned model forward: carry_{k+1}, out_k = step(carry_k) for k < horizon
    (a lax.scan). Returns the outputs stacked time-first: [horizon, ...]."""
    _, outs = jax.lax.scan(lambda carry, _: step(carry), start, length=horizon)
    return outs


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
    """Mean squared error of k-step predictions beside the "nothing changes" guess.

    predicted [K, B, T, D]: predicted[k - 1, :, t] is the model's guess of real[:, t + k]
    made from step t; real [B, T, D]; valid bool [B, T] marks real steps. For each k
    = 1..K, averages over the (b, t) whose t and t + k are both real: `model_k` (the
    prediction's error) and `still_k` (the error of guessing real[:, t + k] = real[:, t]).
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
        out[f"model_{k}"] = (model * both).sum() / count
        out[f"still_{k}"] = (still * both).sum() / count
    return out
