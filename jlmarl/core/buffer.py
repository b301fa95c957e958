"""Whole-episode replay on device.

Episodes are padded to the env's episode_limit T and stored with a `mask` of
real steps, as in PyMARL: obs/state/avail have T+1 entries (the observation
after the last step is kept for bootstrapping), per-step arrays have T.
Insertion is circular; sampling is uniform over stored episodes, without
replacement inside one batch. An env's declared extras (EnvSpec.extras) are stored
like the state, T+1 entries each.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jlmarl.envs.base import EnvSpec


@struct.dataclass
class EpisodeBatch:
    obs: jax.Array  # float32 [B, T+1, n, obs_dim]
    state: jax.Array  # float32 [B, T+1, state_dim]
    avail: jax.Array  # bool    [B, T+1, n, n_actions]
    actions: jax.Array  # int32   [B, T, n]
    reward: jax.Array  # float32 [B, T]
    terminated: jax.Array  # bool    [B, T]
    mask: jax.Array  # bool    [B, T]  step t was taken inside the episode
    extras: dict[str, jax.Array] = dataclasses.field(default_factory=dict)  # each [B, T+1, ...]
    # Segments only (core.rollout.run_segment): bool [B, T+1], the observation starts an
    # episode; None for whole episodes, which all start at t = 0.
    resets: jax.Array | None = None

    @property
    def size(self) -> int:
        return self.reward.shape[0]

    def truncate(self, steps: int) -> EpisodeBatch:
        """The first `steps` steps (and steps+1 observations); exact for every episode
        no longer than `steps`, whose later entries are all padding."""
        obs_like = {k: getattr(self, k)[:, : steps + 1] for k in ("obs", "state", "avail")}
        step_like = {k: getattr(self, k)[:, :steps] for k in ("actions", "reward", "terminated", "mask")}
        extras = {k: v[:, : steps + 1] for k, v in self.extras.items()}
        resets = None if self.resets is None else self.resets[:, : steps + 1]
        return EpisodeBatch(**obs_like, **step_like, extras=extras, resets=resets)


def episode_shapes(spec: EnvSpec, steps: int | None = None) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-episode shape and dtype of every EpisodeBatch field (extras as "extras/<name>");
    `steps` (default: the episode limit) is the length of the time axis."""
    t, n = spec.episode_limit if steps is None else steps, spec.n_agents
    extras = {f"extras/{k}": ((t + 1, *shape), dtype) for k, (shape, dtype) in spec.extras_shapes.items()}
    return extras | {
        "obs": ((t + 1, n, spec.obs_dim), np.dtype(np.float32)),
        "state": ((t + 1, spec.state_dim), np.dtype(np.float32)),
        "avail": ((t + 1, n, spec.n_actions), np.dtype(np.bool_)),
        "actions": ((t, n), np.dtype(np.int32)),
        "reward": ((t,), np.dtype(np.float32)),
        "terminated": ((t,), np.dtype(np.bool_)),
        "mask": ((t,), np.dtype(np.bool_)),
    }


def episode_nbytes(spec: EnvSpec) -> int:
    return sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in episode_shapes(spec).values())


@struct.dataclass
class EpisodeBuffer:
    data: EpisodeBatch  # leading axis = capacity
    pos: jax.Array  # int32 [], next slot to write
    size: jax.Array  # int32 [], episodes stored

    @property
    def capacity(self) -> int:
        return self.data.size


def empty_episodes(spec: EnvSpec, n: int, segment: int | None = None) -> EpisodeBatch:
    """n all-zero (all-padding) episodes, or n segments of `segment` steps (with resets)."""
    shapes = episode_shapes(spec, segment).items()
    fields = {k: jnp.zeros((n, *shape), dtype) for k, (shape, dtype) in shapes}
    extras = {k.split("/", 1)[1]: fields.pop(k) for k in list(fields) if k.startswith("extras/")}
    resets = None if segment is None else jnp.zeros((n, segment + 1), bool)
    return EpisodeBatch(**fields, extras=extras, resets=resets)


def buffer_init(spec: EnvSpec, capacity: int) -> EpisodeBuffer:
    return EpisodeBuffer(empty_episodes(spec, capacity), pos=jnp.int32(0), size=jnp.int32(0))


def buffer_add(buffer: EpisodeBuffer, episodes: EpisodeBatch, write: jax.Array | None = None):
    """Writes N episodes at pos, pos+1, ... (mod capacity); N <= capacity. With `write`
    (a bool scalar) false the buffer is left as it was, at the cost of the N slots only:
    a frozen seed of a vmapped sweep is never a select over its whole buffer."""
    n, cap = episodes.size, buffer.capacity
    if n > cap:
        raise ValueError(f"cannot add {n} episodes to a buffer of {cap}")
    idx = (buffer.pos + jnp.arange(n)) % cap
    if write is None:
        data = jax.tree.map(lambda d, e: d.at[idx].set(e), buffer.data, episodes)
        added = n
    else:
        data = jax.tree.map(lambda d, e: d.at[idx].set(jnp.where(write, e, d[idx])), buffer.data, episodes)
        added = jnp.where(write, n, 0)
    return EpisodeBuffer(data, pos=(buffer.pos + added) % cap, size=jnp.minimum(buffer.size + added, cap))


def buffer_sample(buffer: EpisodeBuffer, key: jax.Array, batch_size: int) -> EpisodeBatch:
    """Uniform sample of distinct stored episodes (requires size >= batch_size)."""
    scores = jax.random.uniform(key, (buffer.capacity,))
    scores = jnp.where(jnp.arange(buffer.capacity) < buffer.size, scores, 2.0)
    _, idx = jax.lax.top_k(-scores, batch_size)
    return jax.tree.map(lambda d: d[idx], buffer.data)


def buffer_recent(buffer: EpisodeBuffer, count: int) -> EpisodeBatch:
    """The newest `count` stored episodes, oldest first (count <= capacity). While fewer
    are stored, the missing ones are all-padding episodes (mask false everywhere)."""
    idx = (buffer.pos - count + jnp.arange(count)) % buffer.capacity
    return jax.tree.map(lambda d: d[idx], buffer.data)


def available_memory_bytes(device: jax.Device) -> tuple[int, str]:
    """Free memory of the device the buffers will live on, and where it came from."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)), f"{device.platform} device memory"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available host RAM"
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"), "available host RAM"


def check_program_fits(compiled, device: jax.Device, settings: dict[str, int], fraction: float = 0.9) -> int:
    """Raises MemoryError if one call of a compiled program needs more working memory
    (XLA's temporaries) than `fraction` of what is free now; its arguments (the carry,
    the replay buffer) are allocated already and not counted again. XLA's figure leaves out
    what the runtime holds besides (checkpoint copies, the allocator's caches), so this
    refuses only a run that cannot fit at all, before it trains, instead of the kernel
    killing it mid-run. settings: what sizes the program, named in the message. Returns
    the bytes (0 where the backend gives no analysis)."""
    analysis = compiled.memory_analysis()
    temp = int(getattr(analysis, "temp_size_in_bytes", 0) or 0) if analysis is not None else 0
    free, where = available_memory_bytes(device)
    if temp > fraction * free:
        parts = ", ".join(f"{k}={v}" for k, v in settings.items())
        raise MemoryError(
            f"the compiled training chunk needs {temp / 2**30:.2f} GiB of working memory besides "
            f"its buffers ({parts}) but only {free / 2**30:.2f} GiB of {where} is free (at most "
            f"{fraction:.0%} may be used); lower batch_size or num_seeds"
        )
    return temp


def check_buffer_fits(
    spec: EnvSpec,
    capacity: int,
    num_seeds: int,
    device: jax.Device,
    fraction: float = 0.7,
    episodes_in_flight: dict[str, int] | None = None,
) -> int:
    """Raises MemoryError, before anything is allocated or compiled, if the episode data of
    all seeds would take more than `fraction` of the free memory; returns the bytes.

    Counted per seed: the replay buffer (`capacity` episodes; 0 for on-policy learners) and
    `episodes_in_flight`, the other episode-sized arrays a chunk holds at once, by the
    setting that sizes them (e.g. {"num_envs": 8, "batch_size": 128, "test_episodes": 32})."""
    per_episode = episode_nbytes(spec)
    sizes = {"buffer_size": capacity, **(episodes_in_flight or {})}
    need = per_episode * sum(sizes.values()) * num_seeds
    free, where = available_memory_bytes(device)
    if need > fraction * free:
        key = max(sizes, key=sizes.get)
        others = sum(v for k, v in sizes.items() if k != key)
        fits = max(int(fraction * free / (per_episode * num_seeds)) - others, 0)
        parts = ", ".join(f"{k}={v}" for k, v in sizes.items() if v)
        raise MemoryError(
            f"the run's episode data needs {need / 2**30:.2f} GiB ({num_seeds} seed(s) x ({parts}) "
            "episodes x "
            f"{per_episode / 2**20:.2f} MiB per {spec.episode_limit}-step episode of {spec.name}) but only "
            f"{free / 2**30:.2f} GiB of {where} is free (at most {fraction:.0%} may be used); lower {key} "
            f"(at most {fits} fits) or num_seeds"
        )
    return need
