"""The learner contract: an algorithm is data plus pure functions.

`build(spec, cfg) -> Algo` closes the functions over the static configuration
(network sizes, gamma, ...); everything they take and return is arrays/pytrees,
so the engine can jit, vmap over seeds and donate them freely. The engine knows
nothing else about any method.

The engine tells `update` the clock (`UpdateContext`, PyMARL's t_env/episode),
which of the method's declared `phases` is in force (e.g. LIMARL's Phase I, a
world model's warm-up), and, when the method asks for them, the newest episodes
in the replay buffer. A method that learns on-policy declares `replay=False`:
no buffer is allocated and `update` sees the chunk's fresh episodes (or, with
`segment_length`, fixed-length segments from persistent auto-resetting envs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
from flax import struct

TrainState = Any  # a flax.struct pytree owned by the algorithm
ActorState = Any  # per-env recurrent carry of the acting agents


class AlgoConfigError(ValueError):
    """A method's settings cannot work with this env or each other: one sentence that
    names the setting and the fix (raised by build before anything is compiled)."""


@dataclasses.dataclass(frozen=True)
class Phase:
    """A stretch of training the engine schedules before the method's main training.

    `episodes`: its length in episodes collected once training has started (the
    engine turns it into update calls: ceil(episodes / episodes_per_update))."""

    name: str
    episodes: int


@struct.dataclass
class UpdateContext:
    """What the engine tells every update call.

    env_steps   int32 []  real env steps collected by this seed (PyMARL's t_env)
    episodes    int32 []  episodes collected by this seed
    updates     int32 []  update calls made before this one
    phase       int32 []  index into Algo.phases of the phase in force; len(phases) once
                          all are over (main training). The same for every seed of a
                          sweep, so `lax.cond` on it stays a real branch under the vmap.
    recent      EpisodeBatch | None: the newest `Algo.recent_episodes` episodes in the
                buffer, newest last (None unless the method asks for them)
    segment_start  ActorState | None: for segment learners, the acting carry at the
                segment's first step (episodes continue across segments)
    """

    env_steps: jax.Array
    episodes: jax.Array
    updates: jax.Array
    phase: jax.Array
    recent: Any = None
    segment_start: Any = None


@dataclasses.dataclass(frozen=True)
class Algo:
    name: str
    # key -> TrainState
    init: Callable[[jax.Array], TrainState]
    # n_envs -> ActorState for the start of an episode
    init_actor: Callable[[int], ActorState]
    # (train_state, actor_state, obs [N,n,obs], avail [N,n,A], key, env_steps [], greedy: static bool)
    #   -> (actions int32 [N,n], actor_state). Decentralised by construction: no global state.
    act: Callable[..., tuple[jax.Array, ActorState]]
    # (train_state, EpisodeBatch, key, UpdateContext) -> (train_state, metrics: flat dict of
    # scalars, the same keys in every phase). The batch's time axis may be shorter than the
    # episode limit (engine time buckets): derive T from the arrays, never from the spec.
    update: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    # train_state -> train_state, called every `target_update_interval` episodes
    target_update: Callable[[TrainState], TrainState]
    # optional: (train_state, EpisodeBatch) -> (q_tot [B,T,A**n], q_agents [B,T,n,A]),
    # the joint value of every joint action at every step (matrix-game Q tables)
    joint_q: Callable[..., tuple[jax.Array, jax.Array]] | None = None
    # True only for privileged, non-decentralised variants (e.g. LIMARL's oracle upper
    # bound): the rollout then also passes the global state as act(..., state=[N, S]).
    act_uses_state: bool = False
    # Training phases before the main one, in order (see Phase and UpdateContext.phase).
    phases: tuple[Phase, ...] = ()
    # False: on-policy, no replay buffer; each update sees the chunk's fresh episodes.
    replay: bool = True
    # > 0: UpdateContext.recent holds the newest this-many episodes of the buffer.
    recent_episodes: int = 0
    # > 0 (with replay=False): collect fixed-length segments of this many steps from
    # persistent auto-resetting envs instead of whole padded episodes (PQN's way); the
    # batch then has `resets` and UpdateContext.segment_start.
    segment_length: int = 0
