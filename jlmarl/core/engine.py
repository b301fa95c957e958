"""The compiled training chunk.

One chunk, for every seed at once (vmapped), is:

    collect num_envs episodes -> add to the replay buffer -> K updates
    -> target update when due -> greedy evaluation when due

(an on-policy algo, `Algo.replay=False`, has no buffer: one update on the
chunk's fresh episodes). Each update is told the clock and the phase in force
(jlmarl.core.algo.UpdateContext); the phase is decided here from the method's
declared `phases`, so pre-training runs inside the compiled chunk.

compiled once with its carry donated. The schedule (when to start training,
when to copy targets, when to evaluate) is decided from quantities that are the
same for every seed (the chunk index) or passed in per seed by the driver, so
`lax.cond` stays a real branch under the seed vmap and a seed's numbers do not
depend on the other seeds of the sweep (beyond float rounding). A seed that has
reached its budget is frozen (the driver's per-seed `train` mask): its carry
leaves the chunk unchanged while slower seeds train on, so its final parameters
are those of a lone run with that seed.
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

from jlmarl.core.algo import Algo, UpdateContext
from jlmarl.core.buffer import (
    EpisodeBatch,
    EpisodeBuffer,
    buffer_add,
    buffer_init,
    buffer_recent,
    buffer_sample,
    empty_episodes,
)
from jlmarl.core.rollout import Stream, init_stream, run_episodes, run_segment, summarize, summary_shapes
from jlmarl.envs.base import Env


@struct.dataclass
class SeedCarry:
    """Everything one seed's training needs between chunks."""

    train_state: Any
    buffer: EpisodeBuffer | None  # None for on-policy algos
    key: jax.Array  # training stream (collection, sampling, updates)
    eval_key: jax.Array  # evaluation stream: eval i uses fold_in(eval_key, i)
    env_steps: jax.Array  # int32 [], real env steps collected
    episodes: jax.Array  # int32 [], episodes collected
    evals: jax.Array  # int32 [], evaluations run
    updates: jax.Array  # int32 [], update calls made (the same for every seed)
    stream: Stream | None = None  # segment learners: the persistent envs


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
    episodes_per_update: float = 1.0  # turns a phase's episodes into update calls

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
            episodes_per_update=float(cfg.episodes_per_update),
        )


def over_seeds(fn):
    """jax.vmap(fn) over the leading seed axis of every argument; with one seed, fn on
    the arguments without that axis. XLA's CPU backend lays out some products of a
    vmapped update worse even at size 1 (VDFD's graph products: one update at batch
    128 x T 50 takes 245 ms vmapped and 177 ms plain; benchmarks/seed_vmap.py), and most
    runs have one seed."""
    batched = jax.vmap(fn)

    def run(*args):
        if jax.tree.leaves(args)[0].shape[0] != 1:
            return batched(*args)
        out = fn(*jax.tree.map(lambda x: x[0], args))
        return jax.tree.map(lambda x: x[None], out)

    return run


class Engine:
    """Builds the jitted `init` and `chunk` programs for one (env, algo, config)."""

    def __init__(self, env: Env, algo: Algo, cfg: EngineConfig, sharding=None):
        """sharding: a NamedSharding of the seed axis (jlmarl.core.sharding), or None
        for one device. Every output of init and chunk has the seed axis first."""
        self.env, self.algo, self.cfg = env, algo, cfg
        if algo.segment_length and (algo.replay or getattr(env, "batched", False)):
            raise ValueError(
                f"algo={algo.name} collects segments: it must be on-policy (replay=False) and the env "
                f"JAX-native (env={env.spec.name} steps in host processes); use whole episodes there"
            )
        init, chunk = jax.vmap(self._init_seed), self._chunk
        if sharding is not None:
            # shard_map, not sharding propagation: each device runs exactly the program
            # of a single-device run on its own seeds, with no cross-device reduction
            # (the any-seed-evaluates and time-bucket decisions are per device), so a
            # seed's numbers do not depend on how the sweep is laid out over devices.
            seeds, shared = PartitionSpec("seeds"), PartitionSpec()
            shard = functools.partial(jax.shard_map, mesh=sharding.mesh, check_vma=False)
            init = shard(init, in_specs=seeds, out_specs=seeds)
            chunk = shard(chunk, in_specs=(seeds, shared, seeds, seeds), out_specs=seeds)
        self.init = jax.jit(init)
        self.chunk = jax.jit(chunk, donate_argnums=0)

    def seed_keys(self, seeds) -> jax.Array:
        return jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))

    def _init_seed(self, key: jax.Array) -> SeedCarry:
        k_init, k_run, k_eval = jax.random.split(key, 3)
        zero = jnp.int32(0)
        return SeedCarry(
            train_state=self.algo.init(k_init),
            buffer=buffer_init(self.env.spec, self.cfg.buffer_size) if self.algo.replay else None,
            key=k_run,
            eval_key=k_eval,
            env_steps=zero,
            episodes=zero,
            evals=zero,
            updates=zero,
            stream=self._init_stream(key) if self.algo.segment_length else None,
        )

    def _init_stream(self, key: jax.Array) -> Stream:
        # fold_in, not another split: the keys of whole-episode learners stay as they were
        return init_stream(self.env, self.algo, jax.random.fold_in(key, 7), self.cfg.num_envs)

    def phase_ends(self) -> list[int]:
        """Update calls at which each declared phase ends (cumulative)."""
        ends, total = [], 0
        for phase in self.algo.phases:
            total += math.ceil(phase.episodes / self.cfg.episodes_per_update - 1e-9)
            ends.append(total)
        return ends

    def phase_at(self, updates: jax.Array) -> jax.Array:
        """Index of the phase in force at update call `updates` (a scalar shared by seeds)."""
        ends = self.phase_ends()
        if not ends:
            return jnp.int32(0)
        return jnp.searchsorted(jnp.asarray(ends, jnp.int32), updates, side="right").astype(jnp.int32)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The keys of update()'s metrics, read from its traced output (nothing runs)."""
        return tuple(self.update_metric_shapes)

    @functools.cached_property
    def update_metric_shapes(self) -> dict:
        ts = jax.eval_shape(self.algo.init, jax.random.PRNGKey(0))
        segment = self.algo.segment_length or None
        batch = jax.eval_shape(lambda: empty_episodes(self.env.spec, self._batch_episodes(), segment))
        zero = jnp.int32(0)
        start = jax.eval_shape(lambda: self.algo.init_actor(self.cfg.num_envs)) if segment else None
        ctx = UpdateContext(zero, zero, zero, zero, self._recent_shape(), start)
        _, metrics = jax.eval_shape(self.algo.update, ts, batch, jax.random.PRNGKey(0), ctx)
        return metrics

    @functools.cached_property
    def seed_metric_shapes(self) -> tuple[dict, dict]:
        """One seed's (training metrics, test metrics) of a chunk. The branches that skip
        training or evaluation return zeros of these: deriving them by tracing the chunk
        again, with its every time bucket, was a third of LIMARL's lowering time."""
        trained = jax.ShapeDtypeStruct((), jnp.float32)
        train = {**summary_shapes(self.env.spec), **self.update_metric_shapes, "trained": trained}
        return train, summary_shapes(self.env.spec, "test_")

    def _recent_shape(self):
        k = self.algo.recent_episodes
        return jax.eval_shape(lambda: empty_episodes(self.env.spec, k)) if k > 0 else None

    def _batch_episodes(self) -> int:
        return self.cfg.batch_size if self.algo.replay else self.cfg.num_envs

    def _collect_seed(self, c: SeedCarry):
        """(carry, the fresh episodes or segment, the acting carry it started from, metrics).
        Nothing is written to the buffer here (see _train_replay)."""
        key, k_roll = jax.random.split(c.key)
        if self.algo.segment_length:
            length = self.algo.segment_length
            stream, batch, metrics = run_segment(
                self.env, self.algo, c.train_state, c.stream, k_roll, length, c.env_steps
            )
            finished = metrics.pop("episodes_finished").astype(jnp.int32)
            carry = c.replace(
                stream=stream,
                key=key,
                env_steps=c.env_steps + length * self.cfg.num_envs,
                episodes=c.episodes + finished,
            )
            return carry, batch, c.stream.actor, metrics
        batch, stats = run_episodes(
            self.env, self.algo, c.train_state, k_roll, self.cfg.num_envs, c.env_steps, False
        )
        carry = c.replace(
            key=key,
            env_steps=c.env_steps + stats.lengths.sum(),
            episodes=c.episodes + self.cfg.num_envs,
        )
        return carry, batch, None, summarize(stats)

    def _context(self, c: SeedCarry, phase: jax.Array, start) -> UpdateContext:
        """One seed's UpdateContext; phase is shared by every seed."""
        k = self.algo.recent_episodes
        recent = buffer_recent(c.buffer, k) if k > 0 else None
        return UpdateContext(c.env_steps, c.episodes, c.updates, phase, recent, start)

    def _bucketed_update(self, carry: SeedCarry, batch: EpisodeBatch, keys: jax.Array, start=None):
        """One update of every seed on its batch [S, B, ...], cut to the shortest time
        bucket that covers the longest episode of any seed (see _update_all)."""
        lengths = self.bucket_lengths()
        # Seeds still training have made the same number of update calls, and more than
        # any frozen seed: their count decides the phase, shared (a real branch).
        phase = self.phase_at(jnp.max(carry.updates))
        ctx = jax.vmap(lambda c, a: self._context(c, phase, a))(carry, start)

        def branch(t):
            return over_seeds(lambda ts, b, k, x: self.algo.update(ts, b.truncate(t), k, x))

        longest = batch.mask.sum(axis=-1).max()  # over every seed and episode
        bucket = jnp.searchsorted(jnp.asarray(lengths), longest)
        branches = [branch(t) for t in lengths]
        ts, metrics = jax.lax.switch(bucket, branches, carry.train_state, batch, keys, ctx)
        return carry.replace(train_state=ts, updates=carry.updates + 1), metrics

    def _update_all(self, carry: SeedCarry, buffer: EpisodeBuffer):
        """updates_per_chunk gradient steps for every seed; `carry` without its buffer,
        which is passed apart and only read (see _train_replay).

        Episodes are padded to the env's limit, but most end far earlier. The batches of
        all seeds are sampled first; the longest sampled episode picks the shortest of
        `time_buckets` static lengths covering it (one compiled update per length,
        chosen by lax.switch outside the seed vmap), and the update sees batches cut to
        that length. Cutting drops only padding, so the maths is unchanged (the float
        rounding of sums over time may differ between lengths)."""
        cfg = self.cfg
        sample = jax.vmap(buffer_sample, in_axes=(0, 0, None))

        def one_update(c, _):
            keys = jax.vmap(lambda k: jax.random.split(k, 3))(c.key)  # [S, 3, key]
            batch = sample(buffer, keys[:, 1], cfg.batch_size)
            c, metrics = self._bucketed_update(c.replace(buffer=buffer), batch, keys[:, 2])
            return c.replace(key=keys[:, 0], buffer=None), metrics

        carry, metrics = jax.lax.scan(one_update, carry, length=cfg.updates_per_chunk)
        return carry, jax.tree.map(lambda m: m.mean(axis=0), metrics)

    def _update_on_policy(self, carry: SeedCarry, fresh: EpisodeBatch, start):
        """One update of every seed on the episodes (or segment) it has just collected."""
        keys = jax.vmap(lambda k: jax.random.split(k, 2))(carry.key)  # [S, 2, key]
        carry, metrics = self._bucketed_update(carry, fresh, keys[:, 1], start)
        return carry.replace(key=keys[:, 0]), metrics

    def bucket_lengths(self) -> list[int]:
        """The static batch lengths updates are compiled for: one when every episode has
        the same length (EnvSpec.fixed_length), else `time_buckets` of them."""
        limit, n = self.env.spec.episode_limit, self.cfg.time_buckets
        if self.algo.segment_length:  # segments have no padding to cut
            return [self.algo.segment_length]
        if self.env.spec.fixed_length:
            return [limit]
        return sorted({-(-limit * (i + 1) // n) for i in range(n)})

    def _train(self, carry: SeedCarry, chunk_idx: jax.Array, active: jax.Array):
        """An on-policy learner's chunk: collect, then one update on the fresh episodes."""
        before = carry
        carry, fresh, start, rollout_metrics = jax.vmap(self._collect_seed)(carry)
        carry, update_metrics = self._update_on_policy(carry, fresh, start)
        carry = self._target_and_frozen(carry, before, chunk_idx, active)
        return carry, {**rollout_metrics, **update_metrics, "trained": active.astype(jnp.float32)}

    def _train_replay(self, carry: SeedCarry, chunk_idx: jax.Array, active: jax.Array):
        """A replay learner's chunk: collect, store, updates_per_chunk updates.

        The buffer is written here, outside every lax.cond, and only read inside them:
        XLA's copy insertion gives a conditional branch that updates an operand in place
        a copy of it on the way in and another on the way out, so with the write inside
        the training branch every chunk copied the whole buffer twice (QMIX smax_3m at
        buffer_size 5000: 1362 ms a chunk, 434 ms without the copies;
        benchmarks/results/buffer_copy/)."""
        n_seeds = carry.env_steps.shape[0]
        spec, cfg = self.env.spec, self.cfg
        any_active = jnp.any(active)
        buffer, before = carry.buffer, carry.replace(buffer=None)

        def skip_collect(c):
            fresh = jax.vmap(lambda _: empty_episodes(spec, cfg.num_envs))(jnp.arange(n_seeds))
            return c, fresh, None, _zeros(summary_shapes(spec), n_seeds)

        collect = jax.vmap(self._collect_seed)
        carry, fresh, _, rollout_metrics = jax.lax.cond(any_active, collect, skip_collect, before)
        buffer = jax.vmap(buffer_add)(buffer, fresh, active)  # a frozen seed's slots are left as they were

        def no_updates(c, _):
            return c, _zeros(self.update_metric_shapes, n_seeds)

        # From the buffer, not the chunk index, so that a run resumed without its buffer
        # refills it before training again. Every seed's buffer holds the same number of
        # episodes, so this stays a scalar (a real branch under the vmap).
        can_train = jnp.min(buffer.size) >= cfg.batch_size
        learn = any_active & can_train
        carry, update_metrics = jax.lax.cond(learn, self._update_all, no_updates, carry, buffer)
        carry = self._target_and_frozen(carry, before, chunk_idx, active).replace(buffer=buffer)
        trained = (can_train & active).astype(jnp.float32)
        return carry, {**rollout_metrics, **update_metrics, "trained": trained}

    def _target_and_frozen(self, carry: SeedCarry, before: SeedCarry, chunk_idx, active) -> SeedCarry:
        """The target update when due, then frozen seeds restored to `before`."""
        interval, num_envs = self.cfg.target_update_interval, self.cfg.num_envs
        target_due = (chunk_idx + 1) * num_envs // interval > chunk_idx * num_envs // interval
        ts = jax.lax.cond(target_due, jax.vmap(self.algo.target_update), lambda t: t, carry.train_state)
        return _keep_frozen(carry.replace(train_state=ts), before, active)

    def evaluate_seed(self, c: SeedCarry) -> dict[str, jax.Array]:
        key = jax.random.fold_in(c.eval_key, c.evals)
        _, stats = run_episodes(
            self.env, self.algo, c.train_state, key, self.cfg.test_episodes, c.env_steps, True
        )
        return summarize(stats, "test_")

    def _chunk(self, carry: SeedCarry, chunk_idx: jax.Array, train: jax.Array, eval_due: jax.Array):
        """carry: SeedCarry with a leading seed axis; chunk_idx: a scalar shared by all
        seeds; train: bool [num_seeds], the seeds that collect and update in this chunk
        (the others are left exactly as they were); eval_due: bool [num_seeds]."""

        n_seeds = carry.env_steps.shape[0]
        train_shapes, test_shapes = self.seed_metric_shapes

        def skip_training(c):
            return c, _zeros(train_shapes, n_seeds)

        if self.algo.replay:
            carry, train_metrics = self._train_replay(carry, chunk_idx, train)
        else:
            carry, train_metrics = jax.lax.cond(
                jnp.any(train), lambda c: self._train(c, chunk_idx, train), skip_training, carry
            )
        evaluate = jax.vmap(self.evaluate_seed)

        def no_eval(c):
            return _zeros(test_shapes, n_seeds)

        # Evaluation runs for every seed when any is due; only due seeds advance their
        # eval stream and report, so each seed's numbers stay its own.
        test_metrics = jax.lax.cond(jnp.any(eval_due), evaluate, no_eval, carry)
        carry = carry.replace(evals=carry.evals + eval_due.astype(jnp.int32))
        return carry, train_metrics, test_metrics


def _keep_frozen(new: SeedCarry, old: SeedCarry, active: jax.Array) -> SeedCarry:
    """`new` for active seeds, `old` for frozen ones. The buffer is not selected here
    (buffer_add already skipped a frozen seed's write): a select would copy it whole."""

    def pick(a, b):
        return jnp.where(active.reshape(active.shape + (1,) * (a.ndim - 1)), a, b)

    fields = ("train_state", "key", "env_steps", "episodes", "updates", "stream")
    return new.replace(**{f: jax.tree.map(pick, getattr(new, f), getattr(old, f)) for f in fields})


def _zeros(shapes: dict, n_seeds: int) -> dict:
    """Zeros for every seed, of one seed's metric shapes."""
    return {k: jnp.zeros((n_seeds, *v.shape), v.dtype) for k, v in shapes.items()}
