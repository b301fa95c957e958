"""The compiled training chunk.

One chunk, for every seed at once (vmapped), is:

    collect num_envs episodes -> add to the replay buffer -> K updates
    -> target update when due -> greedy evaluation when due

compiled once with its carry donated. The schedule (when to start training,
when to copy targets, when to evaluate) is decided from quantities that are the
same for every seed (the chunk index) or passed in per seed by the driver, so
`lax.cond` stays a real branch under the seed vmap and a seed's numbers never
depend on the other seeds of the sweep.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jlmarl.algos.base import Algo
from jlmarl.core.buffer import EpisodeBuffer, buffer_add, buffer_init, buffer_sample
from jlmarl.core.rollout import run_episodes, summarize
from jlmarl.envs.base import Env


@struct.dataclass
class SeedCarry:
    """Everything one seed's training needs between chunks."""

    train_state: Any
    buffer: EpisodeBuffer
    key: jax.Array  # training stream (collection, sampling, updates)
    eval_key: jax.Array  # evaluation stream: eval i uses fold_in(eval_key, i)
    env_steps: jax.Array  # int32 [], real env steps collected
    episodes: jax.Array  # int32 [], episodes collected
    evals: jax.Array  # int32 [], evaluations run


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    num_envs: int
    buffer_size: int
    batch_size: int
    updates_per_chunk: int
    target_update_interval: int  # episodes
    test_episodes: int

    @classmethod
    def from_cfg(cls, cfg) -> EngineConfig:
        return cls(
            num_envs=int(cfg.num_envs),
            buffer_size=int(cfg.buffer_size),
            batch_size=int(cfg.batch_size),
            updates_per_chunk=max(1, int(cfg.num_envs) // int(cfg.episodes_per_update)),
            target_update_interval=int(cfg.algo.target_update_interval),
            test_episodes=int(cfg.test_episodes),
        )


class Engine:
    """Builds the jitted `init` and `chunk` programs for one (env, algo, config)."""

    def __init__(self, env: Env, algo: Algo, cfg: EngineConfig):
        self.env, self.algo, self.cfg = env, algo, cfg
        self.init = jax.jit(jax.vmap(self._init_seed))
        self.chunk = jax.jit(self._chunk, donate_argnums=0)

    def seed_keys(self, seeds) -> jax.Array:
        return jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))

    def _init_seed(self, key: jax.Array) -> SeedCarry:
        k_init, k_run, k_eval = jax.random.split(key, 3)
        zero = jnp.int32(0)
        return SeedCarry(
            train_state=self.algo.init(k_init),
            buffer=buffer_init(self.env.spec, self.cfg.buffer_size),
            key=k_run,
            eval_key=k_eval,
            env_steps=zero,
            episodes=zero,
            evals=zero,
        )

    def _train_seed(self, c: SeedCarry, chunk_idx: jax.Array):
        cfg, algo = self.cfg, self.algo
        key, k_roll, k_upd = jax.random.split(c.key, 3)
        batch, stats = run_episodes(self.env, algo, c.train_state, k_roll, cfg.num_envs, c.env_steps, False)
        buffer = buffer_add(c.buffer, batch)
        episodes_before = chunk_idx * cfg.num_envs
        episodes_after = episodes_before + cfg.num_envs

        def one_update(ts, k):
            k_sample, k_update = jax.random.split(k)
            return algo.update(ts, buffer_sample(buffer, k_sample, cfg.batch_size), k_update)

        def updates(ts):
            ts, metrics = jax.lax.scan(one_update, ts, jax.random.split(k_upd, cfg.updates_per_chunk))
            return ts, jax.tree.map(jnp.mean, metrics)

        def no_updates(ts):
            return ts, {k: jnp.float32(0.0) for k in algo.metric_names}

        can_train = episodes_after >= cfg.batch_size
        ts, metrics = jax.lax.cond(can_train, updates, no_updates, c.train_state)
        interval = cfg.target_update_interval
        target_due = episodes_after // interval > episodes_before // interval
        ts = jax.lax.cond(target_due, algo.target_update, lambda t: t, ts)

        metrics = {**summarize(stats), **metrics, "trained": can_train.astype(jnp.float32)}
        carry = c.replace(
            train_state=ts,
            buffer=buffer,
            key=key,
            env_steps=c.env_steps + stats.lengths.sum(),
            episodes=c.episodes + cfg.num_envs,
        )
        return carry, metrics

    def evaluate_seed(self, c: SeedCarry) -> dict[str, jax.Array]:
        key = jax.random.fold_in(c.eval_key, c.evals)
        _, stats = run_episodes(
            self.env, self.algo, c.train_state, key, self.cfg.test_episodes, c.env_steps, True
        )
        return summarize(stats, "test_")

    def _chunk(self, carry: SeedCarry, chunk_idx: jax.Array, do_train: jax.Array, eval_due: jax.Array):
        """carry: SeedCarry with a leading seed axis; chunk_idx, do_train: scalars
        shared by all seeds; eval_due: bool [num_seeds]."""
        train = jax.vmap(self._train_seed, in_axes=(0, None))

        def skip_training(c):
            shapes = jax.eval_shape(train, c, chunk_idx)[1]
            return c, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        carry, train_metrics = jax.lax.cond(do_train, lambda c: train(c, chunk_idx), skip_training, carry)
        evaluate = jax.vmap(self.evaluate_seed)

        def no_eval(c):
            return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(evaluate, c))

        # Evaluation runs for every seed when any is due; only due seeds advance their
        # eval stream and report, so each seed's numbers stay its own.
        test_metrics = jax.lax.cond(jnp.any(eval_due), evaluate, no_eval, carry)
        carry = carry.replace(evals=carry.evals + eval_due.astype(jnp.int32))
        return carry, train_metrics, test_metrics
