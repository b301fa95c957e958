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
        if greedy:
            actions = masked_argmax(q, avail)
        else:
            eps = epsilon_schedule(env_steps, eps_start, eps_finish, eps_anneal)
            actions = epsilon_greedy(key, q, avail, eps)
        return actions, RecurrentActor(hidden, actions)

    def update(ts, batch: EpisodeBatch, key):
        del key  # the update is deterministic given the batch
        inputs = episode_inputs(batch.obs, batch.actions, n_actions)
        q_target_all = unroll(agent, ts.target_params["agent"], inputs)  # [B, T+1, n, A]
        mask = batch.mask.astype(jnp.float32)
        if mixer_net is None:
            mask = jnp.broadcast_to(mask[..., None], batch.actions.shape)
        count = jnp.maximum(mask.sum(), 1.0)

        def loss_fn(params):
            q_all = unroll(agent, params["agent"], inputs)
            # Double Q: greedy next actions from the online net, values from the target net.
            greedy = masked_argmax(jax.lax.stop_gradient(q_all), batch.avail)
            q_next = jnp.take_along_axis(q_target_all, greedy[..., None], axis=-1)[..., 0]
            targets = td_lambda_targets(
                batch.reward,
                batch.terminated,
                batch.mask,
                mix(ts.target_params["mixer"], q_next, batch.state),
                gamma,
                lam,
            )
            chosen = jnp.take_along_axis(q_all[:, :-1], batch.actions[..., None], axis=-1)[..., 0]
            q_tot = mix(params["mixer"], chosen, batch.state[:, :-1])
            td = (q_tot - jax.lax.stop_gradient(targets)) * mask
            aux = {
                "td_error_abs": jnp.abs(td).sum() / count,
                "q_taken_mean": (q_tot * mask).sum() / count,
                "target_mean": (targets * mask).sum() / count,
            }
            return (td**2).sum() / count, aux

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts.params)
        updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, updates)
        metrics = {"loss": loss, **aux, "grad_norm": optax.tree.norm(grads)}
        return ts.replace(params=params, opt_state=opt_state, updates=ts.updates + 1), metrics

    def target_update(ts):
        return ts.replace(target_params=ts.params)

    joint_actions = jnp.array(list(itertools.product(range(n_actions), repeat=n)), jnp.int32)  # [A**n, n]

    def joint_q(ts, batch: EpisodeBatch):
        inputs = episode_inputs(batch.obs, batch.actions, n_actions)
        q = unroll(agent, ts.params["agent"], inputs)[:, :-1]  # [B, T, n, A]
        chosen = q[:, :, jnp.arange(n)[None, :], joint_actions]  # [B, T, J, n]
        state = jnp.broadcast_to(batch.state[:, :-1, None], (*chosen.shape[:3], spec.state_dim))
        q_tot = chosen.sum(-1) if mixer_net is None else mix(ts.params["mixer"], chosen, state)
        return q_tot, q

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
