"""IQL, VDN and QMIX: recurrent Q-learning with an optional mixer (PyMARL2's nq_learner).

Shared pieces: the GRU agent with parameters shared across agents; epsilon-greedy
acting over available actions with a linear epsilon schedule in env steps;
double-Q targets (argmax from the online network, value from the target
network, target mixer on the next state); TD(lambda) over whole episodes;
Adam with global-norm gradient clipping; hard target copies.

IQL has no mixer: each agent regresses its own Q_i on the shared reward
(per-agent TD(lambda) targets); its "Q_tot" readout for Q tables is sum_i Q_i,
the quantity its independent greedy choices maximise.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jlmarl.algos.base import Algo
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.core.targets import td_lambda_targets
from jlmarl.envs.base import EnvSpec
from jlmarl.nets.agents import RNNAgent, agent_inputs, episode_inputs, input_dim, masked_argmax, unroll
from jlmarl.nets.mixers import QMixer, VDNMixer

MIXERS = ("none", "vdn", "qmix")


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
    q_target_all: jax.Array,
    batch: EpisodeBatch,
    mix_online: Callable[[jax.Array, jax.Array], jax.Array],
    mix_target: Callable[[jax.Array, jax.Array], jax.Array],
    gamma: float,
    lam: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Masked mean squared TD(lambda) error with double-Q targets.

    q_all (online, differentiated) and q_target_all: [B, T+1, n, A]. Greedy next
    actions come from the online net, their values from the target net; mix_*(qs
    [B, T', n], state [B, T', S]) -> Q_tot [B, T'] (or [B, T', n] for independent
    learners, whose mask is then broadcast over agents)."""
    greedy = masked_argmax(jax.lax.stop_gradient(q_all), batch.avail)
    q_next = jnp.take_along_axis(q_target_all, greedy[..., None], axis=-1)[..., 0]
    targets = td_lambda_targets(
        batch.reward, batch.terminated, batch.mask, mix_target(q_next, batch.state), gamma, lam
    )
    chosen = jnp.take_along_axis(q_all[:, :-1], batch.actions[..., None], axis=-1)[..., 0]
    q_tot = mix_online(chosen, batch.state[:, :-1])
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


def build(spec: EnvSpec, cfg: dict, mixer: str, name: str | None = None) -> Algo:
    """cfg: the `algo` config section (see configs/algo/qmix.yaml for every key)."""
    if mixer not in MIXERS:
        raise ValueError(f"mixer must be one of {MIXERS}, got {mixer!r}")
    n, n_actions = spec.n_agents, spec.n_actions
    agent = RNNAgent(hidden_dim=int(cfg["hidden_dim"]), n_actions=n_actions)
    mixer_net = {
        "none": None,
        "vdn": VDNMixer(),
        "qmix": QMixer(n, int(cfg.get("mixing_embed_dim", 32)), int(cfg.get("hypernet_embed", 64))),
    }[mixer]
    gamma, lam = float(cfg["gamma"]), float(cfg["td_lambda"])
    eps_start, eps_finish = float(cfg["epsilon_start"]), float(cfg["epsilon_finish"])
    eps_anneal = int(cfg["epsilon_anneal_steps"])
    optimizer = optax.chain(
        optax.clip_by_global_norm(float(cfg["grad_norm_clip"])),
        optax.adam(float(cfg["lr"]), eps=float(cfg.get("adam_eps", 1e-8))),
    )

    def mix(params, qs, state):
        if mixer_net is None:
            return qs  # independent learners keep the agent axis
        return mixer_net.apply(params, qs, state)

    def init(key):
        k_agent, k_mixer = jax.random.split(key)
        h = jnp.zeros((1, agent.hidden_dim))
        x = jnp.zeros((1, input_dim(spec.obs_dim, n_actions, n)))
        params = {"agent": agent.init(k_agent, h, x), "mixer": {}}
        if mixer_net is not None:
            params["mixer"] = mixer_net.init(k_mixer, jnp.zeros((1, n)), jnp.zeros((1, spec.state_dim)))
        return QLearnerState(params, params, optimizer.init(params), jnp.int32(0))

    def init_actor(n_envs):
        return RecurrentActor(
            hidden=jnp.zeros((n_envs, n, agent.hidden_dim)), last_action=jnp.full((n_envs, n), -1, jnp.int32)
        )

    def act(ts, actor, obs, avail, key, env_steps, greedy):
        hidden, q = agent.apply(
            ts.params["agent"], actor.hidden, agent_inputs(obs, actor.last_action, n_actions)
        )
        actions = explore_or_exploit(key, q, avail, greedy, env_steps, (eps_start, eps_finish, eps_anneal))
        return actions, RecurrentActor(hidden, actions)

    def update(ts, batch: EpisodeBatch, key):
        del key  # the update is deterministic given the batch
        inputs = episode_inputs(batch.obs, batch.actions, n_actions)
        q_target_all = unroll(agent, ts.target_params["agent"], inputs)  # [B, T+1, n, A]

        def loss_fn(params):
            q_all = unroll(agent, params["agent"], inputs)
            return double_q_td_loss(
                q_all,
                q_target_all,
                batch,
                lambda qs, s: mix(params["mixer"], qs, s),
                lambda qs, s: mix(ts.target_params["mixer"], qs, s),
                gamma,
                lam,
            )

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts.params)
        updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, updates)
        metrics = {"loss": loss, **aux, "grad_norm": optax.tree.norm(grads)}
        return ts.replace(params=params, opt_state=opt_state, updates=ts.updates + 1), metrics

    def target_update(ts):
        return ts.replace(target_params=ts.params)

    def joint_q(ts, batch: EpisodeBatch):
        joint_actions = all_joint_actions(n, n_actions)
        inputs = episode_inputs(batch.obs, batch.actions, n_actions)
        q = unroll(agent, ts.params["agent"], inputs)[:, :-1]  # [B, T, n, A]
        if mixer_net is None:
            return q[:, :, jnp.arange(n)[None, :], joint_actions].sum(-1), q
        return joint_q_values(
            q, batch.state[:, :-1], joint_actions, lambda c, s: mix(ts.params["mixer"], c, s)
        ), q

    return Algo(
        name=name or mixer,
        init=init,
        init_actor=init_actor,
        act=act,
        update=update,
        target_update=target_update,
        metric_names=("loss", "td_error_abs", "q_taken_mean", "target_mean", "grad_norm"),
        joint_q=joint_q,
    )
