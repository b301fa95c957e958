"""The Q-learning kit every value-based learner is built from.

Acting: the recurrent actor carry, epsilon-greedy over available actions with a
linear epsilon schedule in env steps (`explore_or_exploit`). Learning: the
optimiser (Adam with global-norm clipping) and its step, the masked double-Q
TD(lambda) loss over whole episodes, taking the mixer's inputs rather than the
batch's state. Matrix games: every joint action's Q_tot (`joint_q_values`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jlmarl.core.buffer import EpisodeBatch
from jlmarl.core.targets import td_lambda_targets
from jlmarl.nets.agents import agent_inputs, episode_inputs, masked_argmax
from jlmarl.nets.recurrent import unroll


@struct.dataclass
class QLearnerState:
    params: Any  # {"agent": ..., "mixer": ...}
    target_params: Any
    opt_state: Any
    updates: jax.Array  # int32 [], gradient steps taken


@struct.dataclass
class RecurrentActor:
    hidden: jax.Array  # [N, n, H]
    last_action: jax.Array  # int32 [N, n], -1 before the first action


def epsilon_schedule(env_steps: jax.Array, start: float, finish: float, anneal_steps: int) -> jax.Array:
    frac = jnp.clip(env_steps / max(anneal_steps, 1), 0.0, 1.0)
    return start + frac * (finish - start)


def epsilon_greedy(key: jax.Array, q: jax.Array, avail: jax.Array, epsilon: jax.Array) -> jax.Array:
    """q, avail [..., A]; with probability epsilon a uniformly random available action."""
    k_explore, k_random = jax.random.split(key)
    greedy = masked_argmax(q, avail)
    random = jax.random.categorical(k_random, jnp.where(avail, 0.0, -jnp.inf), axis=-1).astype(jnp.int32)
    explore = jax.random.uniform(k_explore, greedy.shape) < epsilon
    return jnp.where(explore, random, greedy)


def explore_or_exploit(
    key: jax.Array, q: jax.Array, avail: jax.Array, greedy: bool, env_steps: jax.Array, schedule: tuple
) -> jax.Array:
    """Greedy (evaluation) or epsilon-greedy with epsilon from `schedule` = (start, finish,
    anneal_steps) at env_steps: the acting rule of every value-based learner."""
    if greedy:
        return masked_argmax(q, avail)
    return epsilon_greedy(key, q, avail, epsilon_schedule(env_steps, *schedule))


def double_q_td_loss(
    q_all: jax.Array,
    q_target_all: jax.Array | Callable[[jax.Array], jax.Array],
    batch: EpisodeBatch,
    mixer_inputs: jax.Array,
    mix_online: Callable[[jax.Array, jax.Array], jax.Array],
    mix_target: Callable[[jax.Array, jax.Array], jax.Array],
    gamma: float,
    lam: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Masked mean squared TD(lambda) error with double-Q targets.

    q_all (online, differentiated) and q_target_all: [B, T+1, n, A]. Greedy next
    actions come from the online net, their values from the target net; q_target_all
    may instead be a function greedy [B, T+1, n] -> the target net's values at those
    actions [B, T+1, n], for agents whose per-action head is costly (MMSA's).
    mixer_inputs [B, T+1, M]: what the mixer is conditioned on at every observation
    (the state for QMIX; MMSA/VDFD append their imagined rollout); the online mix reads
    steps 0..T-1, the target mix every step (the targets bootstrap from t+1).
    mix_*(qs [B, T', n], inputs [B, T', M]) -> Q_tot [B, T'] (or [B, T', n] for
    independent learners, whose mask is then broadcast over agents). batch supplies
    avail, actions, reward, terminated and mask only."""
    greedy = masked_argmax(jax.lax.stop_gradient(q_all), batch.avail)
    if callable(q_target_all):
        q_next = q_target_all(greedy)
    else:
        q_next = jnp.take_along_axis(q_target_all, greedy[..., None], axis=-1)[..., 0]
    targets = td_lambda_targets(
        batch.reward, batch.terminated, batch.mask, mix_target(q_next, mixer_inputs), gamma, lam
    )
    chosen = jnp.take_along_axis(q_all[:, :-1], batch.actions[..., None], axis=-1)[..., 0]
    q_tot = mix_online(chosen, mixer_inputs[:, :-1])
    mask = batch.mask.astype(jnp.float32)
    if q_tot.ndim == 3:
        mask = jnp.broadcast_to(mask[..., None], q_tot.shape)
    count = jnp.maximum(mask.sum(), 1.0)
    td = (q_tot - jax.lax.stop_gradient(targets)) * mask
    aux = {
        "td_error_abs": jnp.abs(td).sum() / count,
        "q_taken_mean": (q_tot * mask).sum() / count,
        "target_mean": (targets * mask).sum() / count,
    }
    return (td**2).sum() / count, aux


MAX_JOINT_ACTIONS = 100_000


def all_joint_actions(n_agents: int, n_actions: int) -> jax.Array:
    """Every joint action, int32 [n_actions**n_agents, n_agents], first agent slowest.
    For the Q tables of small matrix games only: call it where joint_q is traced, never
    when an algo is built (smax_corridor would ask for 29**6 rows, 14 GB)."""
    if n_actions**n_agents > MAX_JOINT_ACTIONS:
        raise ValueError(
            f"{n_agents} agents x {n_actions} actions have {n_actions**n_agents} joint actions; "
            f"Q tables are for matrix games (at most {MAX_JOINT_ACTIONS})"
        )
    return jnp.array(list(itertools.product(range(n_actions), repeat=n_agents)), jnp.int32)


def joint_q_values(
    q: jax.Array, state: jax.Array, joint_actions: jax.Array, mix: Callable[[jax.Array, jax.Array], jax.Array]
) -> jax.Array:
    """q [B, T, n, A], state [B, T, S] -> Q_tot of every joint action [B, T, J]."""
    n = q.shape[2]
    chosen = q[:, :, jnp.arange(n)[None, :], joint_actions]  # [B, T, J, n]
    state = jnp.broadcast_to(state[:, :, None], (*chosen.shape[:3], state.shape[-1]))
    return mix(chosen, state)


def joint_q_table(agent, agent_params, batch: EpisodeBatch, n_actions: int, mix=None):
    """(Q_tot of every joint action [B, T, A**n], the agents' q [B, T, n, A]) of a recurrent
    agent's utilities: the matrix-game Q tables. mix(chosen [B, T, J, n], state [B, T, J, S])
    -> [B, T, J]; None = their sum (independent learners' readout)."""
    n = batch.actions.shape[-1]
    joint_actions = all_joint_actions(n, n_actions)
    q = unroll(agent, agent_params, episode_inputs(batch.obs, batch.actions, n_actions))[:, :-1]
    if mix is None:
        return q[:, :, jnp.arange(n)[None, :], joint_actions].sum(-1), q
    return joint_q_values(q, batch.state[:, :-1], joint_actions, mix), q


def recurrent_act(agent, n_actions: int, epsilon: tuple[float, float, int]):
    """The acting rule of a learner whose agent is one recurrent Q network shared by the
    agents (params["agent"]): each agent's own observation and last action in, epsilon-greedy
    over its available actions (greedy at evaluation). Returns Algo.act."""

    def act(ts, actor, obs, avail, key, env_steps, greedy):
        inputs = agent_inputs(obs, actor.last_action, n_actions)
        hidden, q = agent.apply(ts.params["agent"], actor.hidden, inputs)
        actions = explore_or_exploit(key, q, avail, greedy, env_steps, epsilon)
        return actions, RecurrentActor(hidden, actions)

    return act


def init_recurrent_actor(n_envs: int, n_agents: int, hidden_dim: int) -> RecurrentActor:
    """The actor carry at the start of an episode: zero hidden state, no last action."""
    return RecurrentActor(
        hidden=jnp.zeros((n_envs, n_agents, hidden_dim)),
        last_action=jnp.full((n_envs, n_agents), -1, jnp.int32),
    )


def make_optimizer(
    lr: float, grad_norm_clip: float, adam_eps: float = 1e-8, kind: str = "adam", rms_decay: float = 0.99
) -> optax.GradientTransformation:
    """Global-norm gradient clipping, then Adam (PyMARL2's optimiser), RMSProp (PyMARL's
    original: decay rms_decay, epsilon adam_eps; MMSA and VDFD) or RAdam (PQN)."""
    inner = {
        "adam": lambda: optax.adam(lr, eps=adam_eps),
        "rmsprop": lambda: optax.rmsprop(lr, rms_decay, eps=adam_eps),
        "radam": lambda: optax.radam(lr, eps=adam_eps),
    }
    if kind not in inner:
        raise ValueError(f"optimizer must be one of {', '.join(inner)}, got {kind!r}")
    return optax.chain(optax.clip_by_global_norm(grad_norm_clip), inner[kind]())


def apply_gradients(optimizer: optax.GradientTransformation, params, opt_state, grads):
    """One optimiser step: (params, opt_state)."""
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def epsilon_settings(cfg: dict) -> tuple[float, float, int]:
    """(start, finish, anneal_steps) of the algo section's epsilon keys, as
    explore_or_exploit takes them."""
    return float(cfg["epsilon_start"]), float(cfg["epsilon_finish"]), int(cfg["epsilon_anneal_steps"])
