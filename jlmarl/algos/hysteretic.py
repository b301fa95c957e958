"""Rec-Hyst-IQL: recurrent hysteretic independent Q-learners (Belief-I2Q's baseline, seed 002).

Each agent has its own GRU Q-network (no parameter sharing, no mixer) over
[o_t, onehot(a_{t-1}), onehot(i)] and regresses its own Q_i(h, a) on the shared
reward with double-Q TD(lambda) targets (lambda = 0: one-step). Hysteresis: a TD
error delta = target - Q below zero (the team did worse than this agent expected,
possibly because a teammate explored) moves Q with the smaller rate beta, a
positive one with alpha; with a single optimizer this is the squared error
weighted by beta/alpha (`hysteresis`) where delta < 0, i.e. the gradient of the
negative errors scaled by beta/alpha. The target network follows by Polyak
averaging (tau) inside every update; `target_update` is the identity.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jlmarl.algos.q_learning import (
    RecurrentActor,
    apply_gradients,
    epsilon_settings,
    explore_or_exploit,
    init_recurrent_actor,
)
from jlmarl.core.algo import Algo, UpdateContext
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.core.targets import td_lambda_targets
from jlmarl.envs.base import EnvSpec
from jlmarl.nets.agents import RNNAgent, agent_inputs, episode_inputs, input_dim, masked_argmax
from jlmarl.nets.per_agent import (
    clip_per_agent,
    init_per_agent,
    soft_update,
    step_rnn_per_agent,
    unroll_per_agent,
)


@struct.dataclass
class HystState:
    params: Any  # {"agent": per-agent GRU Q-networks, leaves [n_agents, ...]}
    target_params: Any
    opt_state: Any
    updates: jax.Array  # int32 []


def hysteretic_weights(td: jax.Array, ratio: float) -> jax.Array:
    """1 where the TD error (target - Q) is >= 0, beta/alpha where it is negative."""
    return jnp.where(td < 0, ratio, 1.0)


def hysteretic_td_loss(q_taken: jax.Array, targets: jax.Array, mask: jax.Array, ratio: float) -> jax.Array:
    """Per-agent mean of w * (target - Q)^2 over the agent's steps, w = hysteretic_weights
    (held constant): the gradient of a negative TD error is scaled by ratio, a positive
    one's is not. q_taken, targets, mask [B, T, n] -> [n]."""
    td = jax.lax.stop_gradient(targets) - q_taken
    weights = jax.lax.stop_gradient(hysteretic_weights(td, ratio))
    count = jnp.maximum(mask.sum(axis=(0, 1)), 1.0)
    return (weights * td**2 * mask).sum(axis=(0, 1)) / count


def build(spec: EnvSpec, cfg: dict, name: str | None = None) -> Algo:
    """cfg: the `algo` config section (configs/algo/rec_hyst_iql.yaml documents every key)."""
    n, n_actions = spec.n_agents, spec.n_actions
    agent = RNNAgent(hidden_dim=int(cfg["hidden_dim"]), n_actions=n_actions)
    gamma, lam, tau = float(cfg["gamma"]), float(cfg["td_lambda"]), float(cfg["tau"])
    ratio = float(cfg["hysteresis"])
    epsilon = epsilon_settings(cfg)
    clip = float(cfg["grad_norm_clip"])
    optimizer = optax.adam(float(cfg["lr"]))

    def init(key):
        h = jnp.zeros((1, agent.hidden_dim))
        x = jnp.zeros((1, input_dim(spec.obs_dim, n_actions, n)))
        params = {"agent": init_per_agent(agent, key, n, h, x)}
        return HystState(params, params, optimizer.init(params), jnp.int32(0))

    def init_actor(n_envs):
        return init_recurrent_actor(n_envs, n, agent.hidden_dim)

    def act(ts, actor, obs, avail, key, env_steps, greedy):
        x = agent_inputs(obs, actor.last_action, n_actions)
        hidden, q = step_rnn_per_agent(agent, ts.params["agent"], actor.hidden, x)
        actions = explore_or_exploit(key, q, avail, greedy, env_steps, epsilon)
        return actions, RecurrentActor(hidden, actions)

    def update(ts, batch: EpisodeBatch, key, ctx: UpdateContext):
        del key, ctx  # deterministic given the batch
        inputs = episode_inputs(batch.obs, batch.actions, n_actions)
        q_target_all = unroll_per_agent(agent, ts.target_params["agent"], inputs)  # [B, T+1, n, A]
        mask = jnp.broadcast_to(batch.mask[..., None], batch.actions.shape).astype(jnp.float32)
        count = jnp.maximum(mask.sum(axis=(0, 1)), 1.0)  # [n]

        def loss_fn(params):
            q_all = unroll_per_agent(agent, params["agent"], inputs)
            greedy = masked_argmax(jax.lax.stop_gradient(q_all), batch.avail)  # double Q
            q_next = jnp.take_along_axis(q_target_all, greedy[..., None], axis=-1)[..., 0]
            targets = jax.lax.stop_gradient(
                td_lambda_targets(batch.reward, batch.terminated, batch.mask, q_next, gamma, lam)
            )
            q_taken = jnp.take_along_axis(q_all[:, :-1], batch.actions[..., None], axis=-1)[..., 0]
            td = targets - q_taken
            per_agent = hysteretic_td_loss(q_taken, targets, mask, ratio)  # [n]
            aux = {
                "td_error_abs": (jnp.abs(td) * mask).sum() / count.sum(),
                "negative_td_frac": ((td < 0) * mask).sum() / count.sum(),
                "q_taken_mean": (q_taken * mask).sum() / count.sum(),
                "target_mean": (targets * mask).sum() / count.sum(),
            }
            # Summed over agents: each agent's parameters get the gradient of its own loss only.
            return per_agent.sum(), aux

        (total, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts.params)
        grad_norm = optax.tree.norm(grads)
        params, opt_state = apply_gradients(optimizer, ts.params, ts.opt_state, clip_per_agent(grads, clip))
        ts = ts.replace(
            params=params,
            target_params=soft_update(ts.target_params, params, tau),
            opt_state=opt_state,
            updates=ts.updates + 1,
        )
        return ts, {"loss": total / n, **aux, "grad_norm": grad_norm}

    return Algo(
        name=name or "rec_hyst_iql",
        init=init,
        init_actor=init_actor,
        act=act,
        update=update,
        target_update=lambda ts: ts,  # soft targets move inside update()
    )
