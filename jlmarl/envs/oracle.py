"""`oracle` (Belief-I2Q, seed 002): find the secretly correct box, helped by an oracle.

Two agents move in the continuous square [0, 1]^2, both starting at (0.5, 0.5).
Positions live on a lattice of step 0.05 (stored as integers 0..20, so that the
"within 0.1" tests are exact); 9 actions, each agent moves 0.05 along x and/or y:

    0 stay, 1 +x, 2 -x, 3 +y, 4 -y, 5 +x+y, 6 +x-y, 7 -x+y, 8 -x-y

(a move past the border is clipped). `random_start=True` draws each agent's start
uniformly over the lattice instead: the Belief-I2Q paper collects its belief-model
data this way (more oracle and box visits per random episode); RL runs keep the
centre start. Three boxes stand at (0.1, 0.1), (0.9, 0.9)
and (0.1, 0.9); one of them, drawn uniformly at reset, is correct. The oracle
stands at (0.9, 0.1). "At" a place means within Euclidean distance 0.1 (inclusive).

Rewards (shared): -0.01 every step; +0.1 for each agent's *first* visit of the
oracle; +1 when an agent is at the correct box, which ends the episode
(`terminated`, info `won` = 1). Being at a wrong box does nothing. 40 steps, then
`truncated`.

Observed, per agent i (obs_dim 5):
    [0:2]  own position (x, y) in [0, 1]
    [2:5]  one-hot of the correct box, only in the observation returned by the step
           in which agent i reaches the oracle for the first time; zeros otherwise
           (later visits reveal nothing). The other agent is not observed.

`oracle_shared` (`shared_view=True`) is the env of the Belief-I2Q paper's public
code, which differs from the spec's reading above in what is shared: every agent
observes both positions, obs_dim 7 = [own x, y, other x, y, reveal(3)], and the
oracle answers once per episode, to everyone: the first step in which any agent
reaches it pays +0.1 (once) and shows the box to both agents.

Global state (state_dim 9):
    [0:4]  both agents' positions (x0, y0, x1, y1) in [0, 1]
    [4:6]  whether each agent has visited the oracle (0/1)
    [6:9]  one-hot of the correct box               <- hidden: EnvSpec.hidden_dims = (6, 7, 8)

Box order (one-hot index): 0 = (0.1, 0.1), 1 = (0.9, 0.9), 2 = (0.1, 0.9).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jlmarl.envs.base import EnvSpec, Timestep, make_timestep
from jlmarl.envs.registry import register

N_AGENTS = 2
RESOLUTION = 20  # lattice points per unit length: one move = 1 / RESOLUTION = 0.05
START = np.array([10, 10], np.int32)
BOXES = np.array([[2, 2], [18, 18], [2, 18]], np.int32)
ORACLE = np.array([18, 2], np.int32)
REACH_SQ = 4  # (0.1 * RESOLUTION) ** 2: "within 0.1", in lattice units squared
MOVES = np.array(
    [[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1], [1, 1], [1, -1], [-1, 1], [-1, -1]],
    np.int32,
)
STEP_REWARD = -0.01
ORACLE_REWARD = 0.1
BOX_REWARD = 1.0


@struct.dataclass
class OracleState:
    pos: jax.Array  # int32 [2, 2], lattice coordinates (x, y) in 0..RESOLUTION
    visited: jax.Array  # bool [2], agent has been at the oracle
    correct: jax.Array  # int32 [], index of the correct box
    t: jax.Array  # int32 [], steps taken
    revealed: jax.Array  # bool [2], the last step showed agent i the box (first visit; shared_view: anyone's)


def _within(pos: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.sum((pos - target) ** 2, axis=-1) <= REACH_SQ


class Oracle:
    """Two agents, three boxes, one oracle; see the module docstring."""

    def __init__(self, episode_limit: int = 40, random_start: bool = False, shared_view: bool = False):
        self.random_start = bool(random_start)
        self.shared_view = bool(shared_view)
        self.spec = EnvSpec(
            name="oracle_shared" if self.shared_view else "oracle",
            n_agents=N_AGENTS,
            obs_dim=7 if self.shared_view else 5,
            state_dim=9,
            n_actions=len(MOVES),
            episode_limit=episode_limit,
            info_keys=("oracle_visited", "won"),  # sorted: the order jax gives dict pytrees
            hidden_dims=(6, 7, 8),
        )

    def _timestep(self, s: OracleState, reward, won) -> Timestep:
        box = jax.nn.one_hot(s.correct, len(BOXES))
        xy = s.pos.astype(jnp.float32) / RESOLUTION
        reveal = s.revealed[:, None].astype(jnp.float32) * box[None, :]
        # shared_view: each agent sees both positions, its own first (agent i's other is 1 - i).
        seen = [xy, xy[::-1]] if self.shared_view else [xy]
        obs = jnp.concatenate([*seen, reveal], axis=1)
        state = jnp.concatenate([xy.reshape(-1), s.visited.astype(jnp.float32), box])
        avail = jnp.ones((N_AGENTS, self.spec.n_actions), jnp.bool_)
        truncated = jnp.logical_and(s.t >= self.spec.episode_limit, ~won)
        info = {"won": won, "oracle_visited": s.visited.any()}
        return make_timestep(self.spec, obs, state, avail, reward, won, truncated, info)

    def reset(self, key: jax.Array) -> tuple[OracleState, Timestep]:
        if self.random_start:  # a key of its own: the box drawn for a key is the same either way
            pos = jax.random.randint(jax.random.fold_in(key, 1), (N_AGENTS, 2), 0, RESOLUTION + 1, jnp.int32)
        else:
            pos = jnp.tile(jnp.asarray(START), (N_AGENTS, 1))
        s = OracleState(
            pos=pos,
            visited=jnp.zeros((N_AGENTS,), jnp.bool_),
            correct=jax.random.randint(key, (), 0, len(BOXES), jnp.int32),
            t=jnp.int32(0),
            revealed=jnp.zeros((N_AGENTS,), jnp.bool_),
        )
        return s, self._timestep(s, 0.0, jnp.bool_(False))

    def step(self, key: jax.Array, s: OracleState, actions: jax.Array) -> tuple[OracleState, Timestep]:
        del key  # deterministic dynamics
        pos = jnp.clip(s.pos + jnp.asarray(MOVES)[actions], 0, RESOLUTION)
        at_oracle = _within(pos, jnp.asarray(ORACLE))
        if self.shared_view:  # the oracle answers once per episode, shown to (and paid once for) all
            answered = at_oracle.any() & ~s.visited.any()
            paid, revealed = answered.astype(jnp.float32), jnp.broadcast_to(answered, (N_AGENTS,))
        else:
            first = at_oracle & ~s.visited
            paid, revealed = first.sum(), first
        won = _within(pos, jnp.asarray(BOXES)[s.correct]).any()
        reward = STEP_REWARD + ORACLE_REWARD * paid + BOX_REWARD * won
        visited = s.visited | at_oracle
        s = OracleState(pos=pos, visited=visited, correct=s.correct, t=s.t + 1, revealed=revealed)
        return s, self._timestep(s, reward, won)


def oracle(episode_limit: int = 40, random_start: bool = False) -> Oracle:
    return Oracle(episode_limit=episode_limit, random_start=random_start)


def oracle_shared(episode_limit: int = 40, random_start: bool = False) -> Oracle:
    return Oracle(episode_limit=episode_limit, random_start=random_start, shared_view=True)


register("oracle", oracle)
register("oracle_shared", oracle_shared)
