"""Episode collection: N vmapped envs, one whole episode each, padded to the limit.

The scan always runs episode_limit steps; an env whose episode has ended keeps
stepping (vectorised code cannot skip it) but its steps are masked out, so they
count neither as data nor as env steps.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from jlmarl.core.algo import Algo
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.envs.base import Env, random_actions, reset_envs, step_envs


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


def summarize(stats: EpisodeStats, prefix: str = "") -> dict[str, jax.Array]:
    """Means over the episodes of a rollout: return, length and every info key
    (`won` becomes `win_rate`)."""
    out = {f"{prefix}return_mean": stats.returns.mean(), f"{prefix}ep_length": stats.lengths.mean()}
    for k, v in stats.info.items():
        out[f"{prefix}{'win_rate' if k == 'won' else k + '_mean'}"] = v.mean()
    return out
