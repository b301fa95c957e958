"""The compiled training chunk.

One chunk, for every seed at once (vmapped), is:

    collect num_envs episodes -> add to the replay buffer -> K updates
    -> target update when due -> greedy evaluation when due

compiled once with its carry donated. The schedule (when to start training,
when to copy targets, when to evaluate) is decided from quantities that are the
same for every seed (the chunk index) or passed in per seed by the driver, so
`lax.cond` stays a real branch under the seed vmap and a seed's numbers do not
depend on the other seeds of the sweep (beyond float rounding).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import PartitionSpec

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


def updates_per_chunk(num_envs: int, episodes_per_update: float) -> int:
    """Gradient steps per chunk of num_envs collected episodes (at least one);
    episodes_per_update below 1 gives several updates per episode (0.1: ten).
    The epsilon keeps 16 / 0.1 from flooring to 159."""
    return max(1, math.floor(num_envs / episodes_per_update + 1e-9))


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    num_envs: int
    buffer_size: int
    batch_size: int
    updates_per_chunk: int
    target_update_interval: int  # episodes
    test_episodes: int
    time_buckets: int = 1  # static batch lengths an update may be cut to (see _update_all)

    @classmethod
    def from_cfg(cls, cfg) -> EngineConfig:
        return cls(
            num_envs=int(cfg.num_envs),
            buffer_size=int(cfg.buffer_size),
            batch_size=int(cfg.batch_size),
            updates_per_chunk=updates_per_chunk(int(cfg.num_envs), cfg.episodes_per_update),
            target_update_interval=int(cfg.algo.target_update_interval),
            test_episodes=int(cfg.test_episodes),
            time_buckets=int(cfg.time_buckets),
        )


class Engine:
    """Builds the jitted `init` and `chunk` programs for one (env, algo, config)."""

    def __init__(self, env: Env, algo: Algo, cfg: EngineConfig, sharding=None):
        """sharding: a NamedSharding of the seed axis (jlmarl.core.sharding), or None
        for one device. Every output of init and chunk has the seed axis first."""
        self.env, self.algo, self.cfg = env, algo, cfg
        init, chunk = jax.vmap(self._init_seed), self._chunk
        if sharding is not None:
            # shard_map, not sharding propagation: each device runs exactly the program
            # of a single-device run on its own seeds, with no cross-device reduction
            # (the any-seed-evaluates and time-bucket decisions are per device), so a
            # seed's numbers do not depend on how the sweep is laid out over devices.
            seeds, shared = PartitionSpec("seeds"), PartitionSpec()
            shard = functools.partial(jax.shard_map, mesh=sharding.mesh, check_vma=False)
            init = shard(init, in_specs=seeds, out_specs=seeds)
            chunk = shard(chunk, in_specs=(seeds, shared, shared, seeds), out_specs=seeds)
        self.init = jax.jit(init)
        self.chunk = jax.jit(chunk, donate_argnums=0)

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

    def _collect_seed(self, c: SeedCarry):
        key, k_roll = jax.random.split(c.key)
        batch, stats = run_episodes(
            self.env, self.algo, c.train_state, k_roll, self.cfg.num_envs, c.env_steps, False
        )
        carry = c.replace(
            buffer=buffer_add(c.buffer, batch),
            key=key,
            env_steps=c.env_steps + stats.lengths.sum(),
            episodes=c.episodes + self.cfg.num_envs,
        )
        return carry, summarize(stats)

    def _update_all(self, carry: SeedCarry):
        """updates_per_chunk gradient steps for every seed.

        Episodes are padded to the env's limit, but most end far earlier. The batches of
        all seeds are sampled first; the longest sampled episode picks the shortest of
        `time_buckets` static lengths covering it (one compiled update per length,
        chosen by lax.switch outside the seed vmap), and the update sees batches cut to
        that length. Cutting drops only padding, so the maths is unchanged (the float
        rounding of sums over time may differ between lengths)."""
        cfg, algo = self.cfg, self.algo
        sample = jax.vmap(buffer_sample, in_axes=(0, 0, None))
        lengths = self.bucket_lengths()
        branches = [jax.vmap(lambda ts, b, k, t=t: algo.update(ts, b.truncate(t), k)) for t in lengths]

        def one_update(c, _):
            keys = jax.vmap(lambda k: jax.random.split(k, 3))(c.key)  # [S, 3, key]
            batch = sample(c.buffer, keys[:, 1], cfg.batch_size)
            longest = batch.mask.sum(axis=-1).max()  # over every seed and episode
            bucket = jnp.searchsorted(jnp.asarray(lengths), longest)
            ts, metrics = jax.lax.switch(bucket, branches, c.train_state, batch, keys[:, 2])
            return c.replace(train_state=ts, key=keys[:, 0]), metrics

        carry, metrics = jax.lax.scan(one_update, carry, length=cfg.updates_per_chunk)
        return carry, jax.tree.map(lambda m: m.mean(axis=0), metrics)

    def bucket_lengths(self) -> list[int]:
        limit, n = self.env.spec.episode_limit, self.cfg.time_buckets
        return sorted({-(-limit * (i + 1) // n) for i in range(n)})

    def _train(self, carry: SeedCarry, chunk_idx: jax.Array):
        cfg, algo = self.cfg, self.algo
        carry, rollout_metrics = jax.vmap(self._collect_seed)(carry)
        episodes_before = chunk_idx * cfg.num_envs
        episodes_after = episodes_before + cfg.num_envs
        n_seeds = carry.env_steps.shape[0]

        def no_updates(c):
            return c, {k: jnp.zeros((n_seeds,), jnp.float32) for k in algo.metric_names}

        # From the buffer, not the chunk index, so that a run resumed without its
        # buffer refills it before training again. Every seed's buffer holds the same
        # number of episodes, so this stays a scalar (a real branch under the vmap).
        can_train = jnp.min(carry.buffer.size) >= cfg.batch_size
        carry, update_metrics = jax.lax.cond(can_train, self._update_all, no_updates, carry)
        interval = cfg.target_update_interval
        target_due = episodes_after // interval > episodes_before // interval
        ts = jax.lax.cond(target_due, jax.vmap(algo.target_update), lambda t: t, carry.train_state)
        trained = jnp.full((n_seeds,), can_train, jnp.float32)
        return carry.replace(train_state=ts), {**rollout_metrics, **update_metrics, "trained": trained}

    def evaluate_seed(self, c: SeedCarry) -> dict[str, jax.Array]:
        key = jax.random.fold_in(c.eval_key, c.evals)
        _, stats = run_episodes(
            self.env, self.algo, c.train_state, key, self.cfg.test_episodes, c.env_steps, True
        )
        return summarize(stats, "test_")

    def _chunk(self, carry: SeedCarry, chunk_idx: jax.Array, do_train: jax.Array, eval_due: jax.Array):
        """carry: SeedCarry with a leading seed axis; chunk_idx, do_train: scalars
        shared by all seeds; eval_due: bool [num_seeds]."""

        def skip_training(c):
            shapes = jax.eval_shape(self._train, c, chunk_idx)[1]
            return c, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        carry, train_metrics = jax.lax.cond(
            do_train, lambda c: self._train(c, chunk_idx), skip_training, carry
        )
        evaluate = jax.vmap(self.evaluate_seed)

        def no_eval(c):
            return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(evaluate, c))

        # Evaluation runs for every seed when any is due; only due seeds advance their
        # eval stream and report, so each seed's numbers stay its own.
        test_metrics = jax.lax.cond(jnp.any(eval_due), evaluate, no_eval, carry)
        carry = carry.replace(evals=carry.evals + eval_due.astype(jnp.int32))
        return carry, train_metrics, test_metrics
