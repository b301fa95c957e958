"""The environment contract of the engine.

Every environment, native or adapted, is a pair of pure functions over arrays:

    reset(key)                      -> (env_state, Timestep)
    step(key, env_state, actions)   -> (env_state, Timestep)

with agents as an array axis (never dicts keyed by agent name), a shared team
reward, and the end of an episode split into `terminated` (a true terminal: do
not bootstrap) and `truncated` (the time limit: bootstrap). `info` holds
fixed-shape arrays only (e.g. `won`), declared up front in `EnvSpec.info_keys`
so that the engine can allocate and aggregate them without tracing the env.

`extras` is the env-to-buffer channel: per-step arrays a learner may train on
but no agent acts on (e.g. SMAX's ally-visibility matrix, VDFD's agent graph),
declared in `EnvSpec.extras` and stored in the replay buffer beside the state.
An env that declares none costs nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

# (name, shape, dtype name) of one extras entry, e.g. ("ally_visibility", (3, 3), "bool")
ExtraSpec = tuple[str, tuple[int, ...], str]


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Static description of an environment (hashable: usable as a jit static)."""

    name: str
    n_agents: int
    obs_dim: int
    state_dim: int
    n_actions: int
    episode_limit: int
    # Keys of Timestep.info; each value is a float32 scalar (flags such as `won` are 0/1).
    info_keys: tuple[str, ...] = ()
    # Indices into Timestep.state of the part hidden from every agent (the label a
    # belief model learns to infer, e.g. Belief-I2Q); () when the env declares none.
    hidden_dims: tuple[int, ...] = ()
    # Per-step arrays of Timestep.extras, recorded by the rollout into the buffer like the
    # state (T+1 entries per episode); () when the env declares none.
    extras: tuple[ExtraSpec, ...] = ()
    # True when every episode lasts exactly episode_limit steps (nothing ends early): the
    # engine then compiles one update length instead of time buckets.
    fixed_length: bool = False

    @property
    def extras_shapes(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """name -> (per-step shape, dtype) of every declared extra."""
        return {name: (tuple(shape), np.dtype(dtype)) for name, shape, dtype in self.extras}

    def __post_init__(self):
        for field in ("n_agents", "obs_dim", "state_dim", "n_actions", "episode_limit"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"EnvSpec.{field} must be a positive int, got {value!r}")
        if any(not 0 <= i < self.state_dim for i in self.hidden_dims):
            raise ValueError(
                f"EnvSpec.hidden_dims {self.hidden_dims} must index the state (dim {self.state_dim})"
            )
        names = [e[0] for e in self.extras]
        if len(set(names)) != len(names):
            raise ValueError(f"EnvSpec.extras names must be unique, got {names}")


@struct.dataclass
class Timestep:
    """What every agent and the learner see after a reset or a step.

    obs         float32 [n_agents, obs_dim]
    state       float32 [state_dim]          (training only: never fed to acting)
    avail       bool    [n_agents, n_actions]
    reward      float32 []                   shared team reward of the last step
    terminated  bool    []                   true terminal (no bootstrapping)
    truncated   bool    []                   time limit reached (bootstrap)
    info        dict[str, scalar array]      keys = EnvSpec.info_keys
    extras      dict[str, array]             keys/shapes/dtypes = EnvSpec.extras ({} if none)
    """

    obs: jax.Array
    state: jax.Array
    avail: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    info: dict[str, jax.Array]
    extras: dict[str, jax.Array] = dataclasses.field(default_factory=dict)

    @property
    def done(self) -> jax.Array:
        return jnp.logical_or(self.terminated, self.truncated)


@runtime_checkable
class Env(Protocol):
    """A pure, jit- and vmap-able environment.

    An env may instead set `batched = True`: its reset/step then take and return a
    leading batch axis themselves (host envs, which make one callback per batch).
    The engine goes through `reset_envs`/`step_envs`, which handle both kinds."""

    spec: EnvSpec

    def reset(self, key: jax.Array) -> tuple[Any, Timestep]: ...

    def step(self, key: jax.Array, env_state: Any, actions: jax.Array) -> tuple[Any, Timestep]: ...


def make_timestep(
    spec: EnvSpec,
    obs,
    state,
    avail,
    reward=0.0,
    terminated=False,
    truncated=False,
    info: dict | None = None,
    extras: dict | None = None,
) -> Timestep:
    """Builds a Timestep with the contract's dtypes, filling absent info keys with zeros.
    Every declared extra must be given, with its declared shape."""
    info = dict(info or {})
    unknown = set(info) - set(spec.info_keys)
    if unknown:
        raise ValueError(f"{spec.name}: info keys {sorted(unknown)} are not declared in EnvSpec.info_keys")
    extras = dict(extras or {})
    declared = spec.extras_shapes
    if set(extras) != set(declared):
        raise ValueError(
            f"{spec.name}: extras {sorted(extras)} differ from EnvSpec.extras {sorted(declared)}"
        )
    for name, (shape, dtype) in declared.items():
        if tuple(jnp.shape(extras[name])) != shape:
            raise ValueError(
                f"{spec.name}: extra {name} has shape {jnp.shape(extras[name])}, declared {shape}"
            )
        extras[name] = jnp.asarray(extras[name], dtype)
    return Timestep(
        obs=jnp.asarray(obs, jnp.float32),
        state=jnp.asarray(state, jnp.float32),
        avail=jnp.asarray(avail, jnp.bool_),
        reward=jnp.asarray(reward, jnp.float32),
        terminated=jnp.asarray(terminated, jnp.bool_),
        truncated=jnp.asarray(truncated, jnp.bool_),
        info={k: jnp.asarray(info.get(k, 0.0), jnp.float32) for k in spec.info_keys},
        extras=extras,
    )


@struct.dataclass
class AutoResetState:
    env_state: Any
    key: jax.Array


class AutoReset:
    """Continuing-stream view of an env: a step that ends an episode resets it.

    The returned Timestep keeps the final step's reward, terminated, truncated and
    info (so returns and wins are not lost) but carries the *new* episode's first
    obs, state and avail. Used for streams of steps (throughput floors,
    step-based learners); the episode rollout of the engine does not need it.
    """

    def __init__(self, env: Env):
        self.env = env
        self.spec = env.spec

    def reset(self, key: jax.Array) -> tuple[AutoResetState, Timestep]:
        key, reset_key = jax.random.split(key)
        env_state, ts = self.env.reset(reset_key)
        return AutoResetState(env_state, key), ts

    def step(self, key: jax.Array, state: AutoResetState, actions: jax.Array):
        env_state, ts = self.env.step(key, state.env_state, actions)
        next_key, reset_key = jax.random.split(state.key)
        reset_state, reset_ts = self.env.reset(reset_key)
        done = ts.done
        env_state = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_state, env_state)
        ts = ts.replace(
            obs=jnp.where(done, reset_ts.obs, ts.obs),
            state=jnp.where(done, reset_ts.state, ts.state),
            avail=jnp.where(done, reset_ts.avail, ts.avail),
            extras=jax.tree.map(lambda r, x: jnp.where(done, r, x), reset_ts.extras, ts.extras),
        )
        return AutoResetState(env_state, next_key), ts


def reset_envs(env: Env, keys: jax.Array) -> tuple[Any, Timestep]:
    """Resets a batch of envs, one key each. Envs that step a whole batch in one call
    (host envs: one callback per batch) declare `batched = True`; the rest are vmapped."""
    if getattr(env, "batched", False):
        return env.reset(keys)
    return jax.vmap(env.reset)(keys)


def step_envs(env: Env, keys: jax.Array, env_state: Any, actions: jax.Array) -> tuple[Any, Timestep]:
    """Steps a batch of envs (see reset_envs)."""
    if getattr(env, "batched", False):
        return env.step(keys, env_state, actions)
    return jax.vmap(env.step)(keys, env_state, actions)


def random_actions(key: jax.Array, avail: jax.Array) -> jax.Array:
    """Uniformly random available action per agent; avail [..., n_actions] bool."""
    logits = jnp.where(avail, 0.0, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
