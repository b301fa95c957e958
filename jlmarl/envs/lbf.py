"""Level-Based Foraging in pure JAX, with the rules of the `lbforaging` package (2.0, `-v3` ids).

`lbf_<task>` (seed 001, Table 10 and appendix B.3): n agents and F food on a square grid, each
with a level. Actions, in lbforaging's indices: 0 none, 1 north, 2 south, 3 west, 4 east,
5 load (the paper lists {None, North, South, East, West, Load}; we keep lbforaging's numbering
so that both sides take the same indices). One step, as lbforaging's `ForagingEnv.step`:

- an action that is not available becomes `none`; a move is available when the target cell is
  on the grid and holds no food (other agents do not block it), `load` when a 4-neighbour
  holds food;
- moves resolve by target cell only: agents whose targets coincide (an agent that stays
  targets its own cell) all stay, every other agent moves. So agents can swap places, follow
  one another, and (lbforaging's quirk, kept) an agent can enter the cell of an agent whose
  own move failed, leaving two agents on one cell;
- each loading agent loads its first 4-neighbour food in the order north, south, west, east;
  a food is collected when the levels of the agents loading it sum to at least its level, and
  each of them gets `level * food_level / (sum of their levels * total food level spawned)`
  (lbforaging's normalised reward, so a whole episode returns at most 1); a failed load costs
  each loader `penalty` (0 in every registered task). The team reward is the agents' sum.
- the episode terminates when every food is collected (`won` = 1) and is truncated at
  `max_episode_steps` (50) otherwise.

Reset follows lbforaging's generator: agent levels uniform in [1, 2], agents on distinct
uniform cells; then each food on a uniform cell of the interior (rows and columns
1 .. size-2) that is not an agent's, not in the 3x3 block around another food and not two
cells away from one in a line; food level uniform in [1, sum of the 3 lowest agent levels],
or exactly that sum when `force_coop` (with at most 3 agents, all of them must load together).

Observation (lbforaging's vector, unnormalised, [3F + 3n]): the (row, col, level) of each food
within `sight` cells (Chebyshev) in row-major order, then of each agent the observer sees,
itself first, others in index order; unused slots are (-1, -1, 0). Coordinates are relative to
the observer's view window, whose corner is (row - min(sight, row), col - min(sight, col)); an
agent is seen when both its window coordinates lie in [0, 2 sight], which (as in lbforaging)
reaches up to 2 sight cells beyond a view clipped at the top or left edge. With full sight
(sight = grid size) the coordinates are absolute. Global state: the agents' observations
concatenated, divided by the grid size (`normalize_state`, default on), so that coordinates and
levels are of order 1; with sight 2 it is not the full board. epymarl gives the raw concatenation
(`normalize_state=false`): QMIX's hypernetworks read the state, and on raw LBF states its joint
value ran away (up to 44, 61 in a probe) for returns of at most 1 while VDN (which reads no state) learned
(benchmarks/results/mmsa_learning/lbf_q_values.json).

Differences to lbforaging, none of which occurs in an episode the generator starts:
- lbforaging looks for a loader's food to the north only when `row > 1` and to the west only
  when `col > 1` (a food on row or column 0 makes it raise); we look whenever the cell is on
  the grid. Food is never spawned on the border, and cannot move.
- lbforaging processes loaders in Python set order, and a loader next to two foods helps
  whichever is processed first; here it helps its first food (N, S, W, E). The generator never
  puts two foods next to one cell.
- The paper used the `-v2` ids of lbforaging 1.x, whose rules the 2.0 `-v3` ids keep; its
  `10x10-3p-5f` needs 5 food, which lbforaging 2.0 does not register (it stops at 4): the host
  twin `lbforaging_Foraging-10x10-3p-5f-v3` builds the 4-food id with `max_num_food=5`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jlmarl.envs import host as host_envs
from jlmarl.envs.base import EnvSpec, Timestep, make_timestep
from jlmarl.envs.registry import register

NONE, NORTH, SOUTH, WEST, EAST, LOAD = range(6)
MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1], [0, 0]], np.int32)  # [6, 2] (drow, dcol)
NEIGHBOURS = MOVES[1:5]  # [4, 2] north, south, west, east: the order a loader looks for food

# task -> (grid size, agents, food, sight (None = the grid size), force_coop); seed 001 Table 10
TASKS = {
    "10x10_3p_5f": (10, 3, 5, None, False),
    "10x10_4p_3f": (10, 4, 3, None, False),
    "2s_8x8_2p_2f_coop": (8, 2, 2, 2, True),
    "2s_10x10_3p_3f": (10, 3, 3, 2, False),
}


@struct.dataclass
class LBFState:
    agent_pos: jax.Array  # int32 [n, 2] (row, col)
    agent_level: jax.Array  # int32 [n]
    food_pos: jax.Array  # int32 [F, 2] (row, col)
    food_level: jax.Array  # int32 [F], 0 once collected (or never spawned)
    food_spawned: jax.Array  # float32 [], sum of the spawned food levels (the reward's normaliser)
    t: jax.Array  # int32 [], steps taken


class LevelBasedForaging:
    """lbforaging's `ForagingEnv(players, field_size=(size, size), max_num_food, sight,
    force_coop, min/max_player_level=1/2, min_food_level=1, max_food_level=None,
    max_episode_steps, penalty, normalize_reward)` with the vector observation; the global state
    is scaled by 1 / size when `normalize_state` (see the module docstring)."""

    def __init__(
        self,
        name: str,
        size: int,
        players: int,
        max_num_food: int,
        sight: int | None = None,
        force_coop: bool = False,
        max_episode_steps: int = 50,
        penalty: float = 0.0,
        normalize_reward: bool = True,
        normalize_state: bool = True,
        min_player_level: int = 1,
        max_player_level: int = 2,
    ):
        if size < 3:
            raise ValueError(
                f"{name}: the grid size must be at least 3 (food spawns off the border), got {size}"
            )
        if not 1 <= min_player_level <= max_player_level:
            raise ValueError(
                f"{name}: need 1 <= min_player_level <= max_player_level, got {min_player_level}, "
                f"{max_player_level}"
            )
        if penalty < 0:
            raise ValueError(f"{name}: env.penalty must be >= 0, got {penalty}")
        self.size, self.n, self.n_food = size, players, max_num_food
        self.sight = size if sight is None else sight
        self.force_coop, self.penalty, self.normalize_reward = force_coop, float(penalty), normalize_reward
        self.state_scale = 1.0 / size if normalize_state else 1.0
        self.min_player_level, self.max_player_level = min_player_level, max_player_level
        obs_dim = 3 * (max_num_food + players)
        self.spec = EnvSpec(
            name=name,
            n_agents=players,
            obs_dim=obs_dim,
            state_dim=players * obs_dim,
            n_actions=6,
            episode_limit=max_episode_steps,
            info_keys=("won",),
        )

    # --- reset ---------------------------------------------------------------------------------

    def reset(self, key: jax.Array) -> tuple[LBFState, Timestep]:
        level_key, pos_key, food_key = jax.random.split(key, 3)
        n, size = self.n, self.size
        level = jax.random.randint(level_key, (n,), self.min_player_level, self.max_player_level + 1)
        cells = jax.random.choice(pos_key, size * size, (n,), replace=False)
        agent_pos = jnp.stack([cells // size, cells % size], -1).astype(jnp.int32)  # [n, 2]
        max_food = jnp.sort(level)[:3].sum()
        min_food = max_food if self.force_coop else 1
        rows, cols = jnp.meshgrid(jnp.arange(size), jnp.arange(size), indexing="ij")
        grid = jnp.stack([rows, cols], -1).reshape(-1, 2)  # [size^2, 2]
        interior = jnp.all((grid >= 1) & (grid <= size - 2), -1)
        on_agent = jnp.any(jnp.all(grid[:, None] == agent_pos[None], -1), -1)
        food_pos = jnp.zeros((self.n_food, 2), jnp.int32)
        food_level = jnp.zeros((self.n_food,), jnp.int32)
        for f, k in enumerate(jax.random.split(food_key, self.n_food)):
            cell_key, level_key = jax.random.split(k)
            d = jnp.abs(grid[:, None] - food_pos[None])  # [size^2, F, 2]
            near = (jnp.max(d, -1) <= 1) | ((jnp.min(d, -1) == 0) & (jnp.max(d, -1) == 2))
            blocked = jnp.any(near & (food_level > 0)[None], -1)
            free = interior & ~on_agent & ~blocked
            cell = jax.random.categorical(cell_key, jnp.where(free, 0.0, -jnp.inf))
            lvl = jax.random.randint(level_key, (), min_food, max_food + 1)
            food_pos = food_pos.at[f].set(grid[cell])
            food_level = food_level.at[f].set(jnp.where(free.any(), lvl, 0))  # 1000 tries fail: no food
        s = LBFState(
            agent_pos=agent_pos,
            agent_level=level.astype(jnp.int32),
            food_pos=food_pos,
            food_level=food_level,
            food_spawned=food_level.sum().astype(jnp.float32),
            t=jnp.int32(0),
        )
        return s, self._timestep(s, 0.0, False)

    # --- step ----------------------------------------------------------------------------------

    def step(self, key: jax.Array, s: LBFState, actions: jax.Array) -> tuple[LBFState, Timestep]:
        del key  # deterministic dynamics
        avail = self.avail(s)  # [n, 6]
        actions = jnp.where(jnp.take_along_axis(avail, actions[:, None], 1)[:, 0], actions, NONE)
        target = s.agent_pos + jnp.asarray(MOVES)[actions]  # [n, 2]
        same = jnp.all(target[:, None] == target[None], -1).sum(-1)  # [n] agents targeting my cell
        agent_pos = jnp.where((same == 1)[:, None], target, s.agent_pos)

        # each loader's food: its first food-holding neighbour (N, S, W, E); loaders do not move
        alive = s.food_level > 0
        around = s.agent_pos[:, None] + jnp.asarray(NEIGHBOURS)[None]  # [n, 4, 2]
        food_at = jnp.all(around[:, :, None] == s.food_pos[None, None], -1) & alive  # [n, 4, F]
        has = food_at.any(-1)  # [n, 4]
        first = jnp.argmax(has, -1)  # [n]
        target_food = jnp.argmax(food_at[jnp.arange(self.n), first], -1)  # [n]
        loading = (actions == LOAD) & has.any(-1)
        loads = loading[:, None] & (target_food[:, None] == jnp.arange(self.n_food)[None])  # [n, F]
        group_level = (loads * s.agent_level[:, None]).sum(0)  # [F]
        collected = alive & loads.any(0) & (group_level >= s.food_level)  # [F]
        mine = jnp.take(s.food_level, target_food).astype(jnp.float32)
        share = s.agent_level * mine
        if self.normalize_reward:
            share = share / (jnp.take(group_level, target_food) * s.food_spawned)
        got = loading & jnp.take(collected, target_food)
        failed = loading & ~jnp.take(collected, target_food)
        reward = jnp.sum(jnp.where(got, share, 0.0) - jnp.where(failed, self.penalty, 0.0))

        s = s.replace(
            agent_pos=agent_pos, food_level=jnp.where(collected, 0, s.food_level).astype(jnp.int32), t=s.t + 1
        )
        return s, self._timestep(s, reward, True)

    # --- what agents see -----------------------------------------------------------------------

    def avail(self, s: LBFState) -> jax.Array:
        """lbforaging's valid actions [n, 6]: none always; a move onto the grid and off food;
        load next to food."""
        size = self.size
        around = s.agent_pos[:, None] + jnp.asarray(NEIGHBOURS)[None]  # [n, 4, 2]
        on_grid = jnp.all((around >= 0) & (around < size), -1)
        food = jnp.any(jnp.all(around[:, :, None] == s.food_pos[None, None], -1) & (s.food_level > 0), -1)
        none = jnp.ones((self.n, 1), jnp.bool_)
        return jnp.concatenate([none, on_grid & ~food, food.any(-1, keepdims=True)], -1)

    def observe(self, s: LBFState) -> jax.Array:
        """lbforaging's vector observation of every agent, float32 [n, 3F + 3n]."""
        sight, big = self.sight, self.size * self.size + self.n
        corner = s.agent_pos - jnp.minimum(sight, s.agent_pos)  # [n, 2] view window's corner

        def slots(seen, key, rel, level):  # [n, m] -> [n, 3m]: seen entries by key, then (-1, -1, 0)
            order = jnp.argsort(jnp.where(seen, key, big), axis=-1)
            seen, rel, level = (
                jnp.take_along_axis(x, o, 1)
                for x, o in ((seen, order), (rel, order[..., None]), (level, order))
            )
            triplet = jnp.concatenate([rel, level[..., None]], -1)  # [n, m, 3]
            return jnp.where(seen[..., None], triplet, jnp.array([-1, -1, 0])).reshape(self.n, -1)

        d_food = jnp.abs(s.food_pos[None] - s.agent_pos[:, None])  # [n, F, 2]
        food_seen = (s.food_level > 0)[None] & jnp.all(d_food <= sight, -1)
        food_key = jnp.broadcast_to(s.food_pos[:, 0] * self.size + s.food_pos[:, 1], food_seen.shape)
        food_rel = s.food_pos[None] - corner[:, None]  # [n, F, 2]
        food_lvl = jnp.broadcast_to(s.food_level, food_seen.shape)
        agent_rel = s.agent_pos[None] - corner[:, None]  # [n, n, 2]
        agent_seen = jnp.all((agent_rel >= 0) & (agent_rel <= 2 * sight), -1)
        me = jnp.eye(self.n, dtype=jnp.bool_)
        agent_key = jnp.where(me, -1, jnp.broadcast_to(jnp.arange(self.n), me.shape))  # myself first
        agent_lvl = jnp.broadcast_to(s.agent_level, me.shape)
        obs = jnp.concatenate(
            [
                slots(food_seen, food_key, food_rel, food_lvl),
                slots(agent_seen, agent_key, agent_rel, agent_lvl),
            ],
            -1,
        )
        return obs.astype(jnp.float32)

    def _timestep(self, s: LBFState, reward, stepped: bool) -> Timestep:
        obs = self.observe(s)
        won = jnp.logical_and(stepped, jnp.all(s.food_level == 0))
        truncated = (s.t >= self.spec.episode_limit) & ~won
        state = obs.reshape(-1) * self.state_scale
        return make_timestep(self.spec, obs, state, self.avail(s), reward, won, truncated, info={"won": won})


def lbf(task: str, **kwargs) -> LevelBasedForaging:
    size, players, food, sight, coop = TASKS[task]
    return LevelBasedForaging(f"lbf_{task}", size, players, food, sight, coop, **kwargs)


# lbforaging host twins of the tasks that jlmarl.envs.host does not register: 10x10-4p-3f is
# an lbforaging id; 10x10-3p-5f is not (lbforaging 2.0 registers 1-4 food), so its twin makes
# the 4-food id with max_num_food=5 (gymnasium.make's keyword overrides the registered one).
HOST_TWINS = {
    "Foraging-10x10-3p-5f-v3": ("Foraging-10x10-3p-4f-v3", {"max_num_food": 5}),
    "Foraging-10x10-4p-3f-v3": ("Foraging-10x10-4p-3f-v3", {}),
}


def lbforaging_twin(gym_id: str, host: dict | None = None, **env_kwargs) -> host_envs.HostEnv:
    base, overrides = HOST_TWINS[gym_id]
    factory = (host_envs.ADAPTERS, "LBForaging", {"gym_id": base, **overrides, **env_kwargs})
    return host_envs.HostEnv(f"lbforaging_{gym_id}", factory, (), host)


for _task in TASKS:
    register(f"lbf_{_task}", functools.partial(lbf, _task))
for _gym_id in HOST_TWINS:
    register(f"lbforaging_{_gym_id}", functools.partial(lbforaging_twin, _gym_id))
    host_envs.HOST_NAMES.append(f"lbforaging_{_gym_id}")  # host envs: not pure functions (tests/test_host.py)
