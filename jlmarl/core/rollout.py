"""Collection: whole episodes (replay learners, evaluation) or fixed-length segments
(on-policy learners that declare `segment_length`).

Episodes: N vmapped envs, one whole episode each, padded to the limit. The scan
always runs episode_limit steps; an env whose episode has ended keeps stepping
(vectorised code cannot skip it) but its steps are masked out, so they count
neither as data nor as env steps.

Segments: N auto-resetting envs that persist between chunks (`Stream`); each chunk
takes `length` steps from each, every step real. An episode that ends inside a
segment is followed by the next one's first step; `resets` marks where episodes
start, so a learner restarts its recurrent state there, and `terminated` is set at
every episode end (truncations included: the real next observation is replaced by
the new episode's, so nothing can bootstrap from it -- PQN's convention).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jlmarl.core.algo import Algo
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.envs.base import AutoReset, Env, EnvSpec, Timestep, random_actions, reset_envs, step_envs


@dataclasses.dataclass(frozen=True)
class UniformRandomPolicy:
    """Acts uniformly over available actions (the `init_actor`/`act` part of the
    Algo contract): the floor of collection throughput, and the behaviour policy
    for offline data collection."""

    def init_actor(self, n_envs: int) -> jax.Array:
        return jnp.zeros((n_envs,))

    def act(self, train_state, actor, obs, avail, key, env_steps, greedy):
        return random_actions(key, avail), actor


@struct.dataclass
class EpisodeStats:
    returns: jax.Array  # float32 [N]
    lengths: jax.Array  # int32 [N]
    info: dict[str, jax.Array]  # each [N]: the env's info at the episode's last step


def run_episodes(
    env: Env,
    algo: Algo | UniformRandomPolicy,
    train_state,
    key: jax.Array,
    n_envs: int,
    env_steps: jax.Array,
    greedy: bool,
) -> tuple[EpisodeBatch, EpisodeStats]:
    spec = env.spec
    k_reset, k_loop = jax.random.split(key)
    env_state, ts = reset_envs(env, jax.random.split(k_reset, n_envs))
    active = jnp.ones((n_envs,), jnp.bool_)

    def body(carry, t):
        env_state, ts, actor, active = carry
        k_act, k_env = jax.random.split(jax.random.fold_in(k_loop, t))
        # The global state reaches act only for algos that declare they need it
        # (privileged upper bounds); decentralised methods never see it.
        privileged = {"state": ts.state} if getattr(algo, "act_uses_state", False) else {}
        actions, actor = algo.act(
            train_state, actor, ts.obs, ts.avail, k_act, env_steps, greedy, **privileged
        )
        env_state, nts = step_envs(env, jax.random.split(k_env, n_envs), env_state, actions)
        record = (
            ts.obs,
            ts.state,
            ts.avail,
            ts.extras,
            actions,
            nts.reward,
            nts.terminated,
            active,
            nts.done,
            nts.info,
        )
        return (env_state, nts, actor, active & ~nts.done), record

    init = (env_state, ts, algo.init_actor(n_envs), active)
    (_, last, _, _), rec = jax.lax.scan(body, init, jnp.arange(spec.episode_limit))
    obs, state, avail, extras, actions, reward, terminated, mask, done, info = jax.tree.map(
        lambda x: jnp.swapaxes(x, 0, 1), rec
    )
    with_last = lambda xs, x: jnp.concatenate([xs, x[:, None]], axis=1)  # noqa: E731
    batch = EpisodeBatch(
        obs=with_last(obs, last.obs),
        state=with_last(state, last.state),
        avail=with_last(avail, last.avail),
        actions=actions,
        reward=reward * mask,
        terminated=terminated & mask,
        mask=mask,
        extras=jax.tree.map(with_last, extras, last.extras),
    )
    ended = (done & mask).astype(jnp.float32)
    stats = EpisodeStats(
        returns=batch.reward.sum(axis=1),
        lengths=mask.sum(axis=1).astype(jnp.int32),
        info={k: (v * ended).sum(axis=1) for k, v in info.items()},
    )
    return batch, stats


def info_metric(key: str) -> str:
    """The metric an info key's episode mean is logged as (`won` becomes `win_rate`)."""
    return "win_rate" if key == "won" else f"{key}_mean"


def summarize(stats: EpisodeStats, prefix: str = "") -> dict[str, jax.Array]:
    """Means over the episodes of a rollout: return, length and every info key."""
    out = {f"{prefix}return_mean": stats.returns.mean(), f"{prefix}ep_length": stats.lengths.mean()}
    for k, v in stats.info.items():
        out[f"{prefix}{info_metric(k)}"] = v.mean()
    return out


def summary_shapes(spec: EnvSpec, prefix: str = "") -> dict[str, jax.ShapeDtypeStruct]:
    """What summarize (and a segment's metrics) return for an env, without tracing it:
    float32 scalars (info values are float32 by the env contract)."""
    names = ["return_mean", "ep_length", *(info_metric(k) for k in spec.info_keys)]
    return {f"{prefix}{name}": jax.ShapeDtypeStruct((), jnp.float32) for name in names}


@struct.dataclass
class Stream:
    """The persistent envs of a segment-collecting learner (one seed), between chunks."""

    env_state: Any  # AutoReset state, leading axis N
    ts: Timestep  # every env's current timestep (obs the next action is chosen on)
    actor: Any  # the acting carry [N, ...]
    first: jax.Array  # bool [N]: ts is an episode's first observation
    ep_return: jax.Array  # float32 [N]: return of the running episode so far
    ep_length: jax.Array  # int32 [N]


def init_stream(env: Env, algo: Algo, key: jax.Array, n_envs: int) -> Stream:
    """N fresh auto-resetting envs and the actor's start-of-episode carry."""
    stream_env = AutoReset(env)
    env_state, ts = jax.vmap(stream_env.reset)(jax.random.split(key, n_envs))
    zeros = jnp.zeros((n_envs,))
    return Stream(
        env_state, ts, algo.init_actor(n_envs), jnp.ones((n_envs,), bool), zeros, zeros.astype(jnp.int32)
    )


def run_segment(
    env: Env, algo: Algo, train_state, stream: Stream, key: jax.Array, length: int, env_steps: jax.Array
) -> tuple[Stream, EpisodeBatch, dict[str, jax.Array]]:
    """`length` steps of every env of the stream (see the module docstring).

    Returns the stream after them, the segment as an EpisodeBatch ([N, length] steps,
    obs-like fields [N, length + 1], `resets` [N, length + 1], mask all true) and the
    means over the episodes that ended in it (return, length, info; `episodes_finished`
    counts them)."""
    stream_env = AutoReset(env)
    n = stream.first.shape[0]

    def body(s: Stream, t):
        k_act, k_env = jax.random.split(jax.random.fold_in(key, t))
        actions, actor = algo.act(train_state, s.actor, s.ts.obs, s.ts.avail, k_act, env_steps, False)
        env_state, nts = jax.vmap(stream_env.step)(jax.random.split(k_env, n), s.env_state, actions)
        done = nts.done
        fresh = algo.init_actor(n)
        actor = jax.tree.map(
            lambda f, a: jnp.where(done.reshape((n,) + (1,) * (a.ndim - 1)), f, a), fresh, actor
        )
        ep_return, ep_length = s.ep_return + nts.reward, s.ep_length + 1
        finished = (done, ep_return, ep_length, nts.info)
        record = (s.ts.obs, s.ts.state, s.ts.avail, s.ts.extras, s.first, actions, nts.reward, done)
        s = Stream(
            env_state, nts, actor, done, jnp.where(done, 0.0, ep_return), jnp.where(done, 0, ep_length)
        )
        return s, (record, finished)

    stream, (rec, fin) = jax.lax.scan(body, stream, jnp.arange(length))
    obs, state, avail, extras, first, actions, reward, done = jax.tree.map(
        lambda x: jnp.swapaxes(x, 0, 1), rec
    )
    with_last = lambda xs, x: jnp.concatenate([xs, x[:, None]], axis=1)  # noqa: E731
    batch = EpisodeBatch(
        obs=with_last(obs, stream.ts.obs),
        state=with_last(state, stream.ts.state),
        avail=with_last(avail, stream.ts.avail),
        actions=actions,
        reward=reward,
        terminated=done,
        mask=jnp.ones_like(done),
        extras=jax.tree.map(with_last, extras, stream.ts.extras),
        resets=with_last(first, stream.first),
    )
    ended, returns, lengths, info = fin  # each [length, N]
    w = ended.astype(jnp.float32)
    count = w.sum()
    mean = lambda x: (x * w).sum() / jnp.maximum(count, 1.0)  # noqa: E731
    metrics = {"return_mean": mean(returns), "ep_length": mean(lengths.astype(jnp.float32))}
    for k, v in info.items():
        metrics[info_metric(k)] = mean(v)
    metrics["episodes_finished"] = count
    return stream, batch, metrics
