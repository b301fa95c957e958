"""The learner contract: an algorithm is data plus pure functions.

`build(spec, cfg) -> Algo` closes the functions over the static configuration
(network sizes, gamma, ...); everything they take and return is arrays/pytrees,
so the engine can jit, vmap over seeds and donate them freely. The engine knows
nothing else about any method.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

TrainState = Any  # a flax.struct pytree owned by the algorithm
ActorState = Any  # per-env recurrent carry of the acting agents


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
    # (train_state, EpisodeBatch, key) -> (train_state, metrics: flat dict of scalars). The
    # batch's time axis may be shorter than the episode limit (engine time buckets): derive
    # T from the arrays, never from the spec.
    update: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    # train_state -> train_state, called every `target_update_interval` episodes
    target_update: Callable[[TrainState], TrainState]
    # names of update()'s metrics, in order (so the engine can allocate them)
    metric_names: tuple[str, ...]
    # optional: (train_state, EpisodeBatch) -> (q_tot [B,T,A**n], q_agents [B,T,n,A]),
    # the joint value of every joint action at every step (matrix-game Q tables)
    joint_q: Callable[..., tuple[jax.Array, jax.Array]] | None = None
    # True only for privileged, non-decentralised variants (e.g. LIMARL's oracle upper
    # bound): the rollout then also passes the global state as act(..., state=[N, S]).
    act_uses_state: bool = False
