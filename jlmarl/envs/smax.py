"""SMAX (jaxmarl's JAX StarCraft) behind the array contract.

`smax_<map>` wraps jaxmarl's `HeuristicEnemySMAX`: our agents are the allies;
the enemies follow jaxmarl's scripted heuristic (shoot the closest unit in
range, otherwise walk towards the allies' side or chase a unit in sight).

Observed: each ally sees, for every other unit *within its sight range* (8-10
map units by type), its health, relative position, last move and attack,
weapon cooldown and type, plus its own health, absolute position, cooldown and
type. Units out of sight, and dead units, read as zeros; a dead ally sees
only zeros. Hidden from the agents: every unit out of sight range and the
enemies' heuristic targets. The global state (jaxmarl's `world_state`) has
every unit: health, absolute position, cooldown, type one-hot, then every
unit's team and type.

Reward: jaxmarl's ally team reward (enemy health fraction removed, plus
`won_battle_bonus` on a win; at most 2 per episode) x `reward_scale` (default
10, SMAC's scale of 20). `terminated` = one team all dead; `truncated` = the
`max_steps` time limit. info `won` = all enemies dead with an ally alive (both
teams dead at once is a draw, as in SMAC).

Maps: every scenario jaxmarl registers, plus ours (SMAX unit indices:
0 marine, 1 marauder, 2 stalker, 3 zealot, 4 zergling, 5 hydralisk):
- corridor: 6 zealots vs 24 zerglings. SMAC's corridor terrain (the narrow
  passage that lets the zealots fight a few zerglings at a time) does not exist
  in SMAX: this is the open 32x32 map, a much harder fight. 200 steps.
- 3s_vs_3z, 3s_vs_4z, 8m_vs_9m, 2m_vs_1z: SMAC's unit lists on SMAX's map.
- protoss_5v5 (stalker/zealot), terran_5v5 (marine/marauder), zerg_5v5
  (zergling/hydralisk): SMACv2-style, with surround/reflect start positions and
  unit types drawn per episode, each ally uniformly from its race's two types,
  the enemies mirroring the allies. SMACv2's third type per race (colossus,
  medivac, baneling) does not exist in SMAX.
SMAC maps needing units SMAX lacks are registered as unsupported and point to
`env=smac_<map>` (real StarCraft II through the smac package).
"""

from __future__ import annotations

import functools
import inspect
import io
import sys

import jax
import jax.numpy as jnp

from jlmarl.envs.base import EnvSpec, make_timestep
from jlmarl.envs.registry import register, register_unsupported

MARINE, MARAUDER, STALKER, ZEALOT, ZERGLING, HYDRALISK = range(6)

# Listed here, not read from jaxmarl, so that listing env names stays import-free.
JAXMARL_MAPS = (
    "3m",
    "8m",
    "25m",
    "2s3z",
    "3s5z",
    "5m_vs_6m",
    "10m_vs_11m",
    "27m_vs_30m",
    "3s5z_vs_3s6z",
    "3s_vs_5z",
    "6h_vs_8z",
    "smacv2_5_units",
    "smacv2_10_units",
    "smacv2_20_units",
)
# map: (ally unit types, enemy unit types)
FIXED_MAPS = {
    "corridor": ((ZEALOT,) * 6, (ZERGLING,) * 24),
    "3s_vs_3z": ((STALKER,) * 3, (ZEALOT,) * 3),
    "3s_vs_4z": ((STALKER,) * 3, (ZEALOT,) * 4),
    "8m_vs_9m": ((MARINE,) * 8, (MARINE,) * 9),
    "2m_vs_1z": ((MARINE,) * 2, (ZEALOT,)),
}
# map: (n_allies, n_enemies, the race's unit types)
RACE_MAPS = {
    "protoss_5v5": (5, 5, (STALKER, ZEALOT)),
    "terran_5v5": (5, 5, (MARINE, MARAUDER)),
    "zerg_5v5": (5, 5, (ZERGLING, HYDRALISK)),
}
DEFAULT_MAX_STEPS = 100
MAX_STEPS = {"corridor": 200}  # 24 zerglings take longer to kill than SMAX's 100-step default
UNSUPPORTED = {
    "MMM": "medivac",
    "MMM2": "medivac",
    "1c3s5z": "colossus",
    "2c_vs_64zg": "colossus",
    "bane_vs_bane": "baneling",
    "so_many_baneling": "baneling",
    "2s_vs_1sc": "spine crawler",
}
# Fixed by the map or by the contract's discrete actions, so not constructor kwargs.
_NOT_PASSED = {"scenario", "num_allies", "num_enemies", "smacv2_position_generation",
               "smacv2_unit_type_generation", "action_type", "max_steps"}  # fmt: skip


class RaceUnitTypes:
    """SMACv2-style unit types: allies drawn uniformly from `types`, enemies mirror them.

    Replaces jaxmarl's `unit_type_generator`, which draws from all six types.
    Enemies beyond the allies' count (none on our maps) get fresh draws.
    """

    def __init__(self, n_allies: int, n_enemies: int, types: tuple[int, ...]):
        self.n_allies, self.n_enemies, self.types = n_allies, n_enemies, types

    def generate(self, key: jax.Array) -> jax.Array:
        drawn = jax.random.choice(key, jnp.asarray(self.types, jnp.uint8), (max(self.n_allies, self.n_enemies),))
        return jnp.concatenate([drawn[: self.n_allies], drawn[: self.n_enemies]])


def _import_jaxmarl_smax():
    # jaxmarl prints on import, after its mabrax module has reset sys.stdout/stderr to
    # sys.__stdout__/__stderr__: redirect_stdout alone cannot silence it, so swap those too.
    saved = sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__
    sys.stdout = sys.__stdout__ = io.StringIO()
    sys.__stderr__ = sys.stderr
    try:
        from jaxmarl.environments import smax
    finally:
        sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__ = saved
    return smax


class SmaxEnv:
    """`HeuristicEnemySMAX` on `map_name`; extra kwargs go to jaxmarl's SMAX / HeuristicEnemySMAX."""

    def __init__(self, map_name: str, max_steps: int | None = None, reward_scale: float = 10.0, **kwargs):
        smax = _import_jaxmarl_smax()
        accepted = (
            set(inspect.signature(smax.SMAX.__init__).parameters)
            | set(inspect.signature(smax.HeuristicEnemySMAX.__init__).parameters)
        ) - _NOT_PASSED - {"self", "env_kwargs"}
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise TypeError(
                f"smax_{map_name}: unexpected keyword argument(s) {unknown}; "
                f"accepted: map_name, max_steps, reward_scale, {', '.join(sorted(accepted))}"
            )
        if max_steps is None:
            max_steps = MAX_STEPS.get(map_name, DEFAULT_MAX_STEPS)

        if map_name in JAXMARL_MAPS:
            scenario = smax.map_name_to_scenario(map_name)
        elif map_name in FIXED_MAPS:
            allies, enemies = FIXED_MAPS[map_name]
            types = jnp.array(allies + enemies, jnp.uint8)
            scenario = smax.Scenario(types, len(allies), len(enemies), False, False)
        elif map_name in RACE_MAPS:
            n_allies, n_enemies, _ = RACE_MAPS[map_name]
            types = jnp.zeros(n_allies + n_enemies, jnp.uint8)  # replaced per episode
            scenario = smax.Scenario(types, n_allies, n_enemies, True, True)
        else:
            raise ValueError(f"unknown SMAX map {map_name!r}; maps: {', '.join(MAP_NAMES)}")

        self.map_name = map_name
        self.reward_scale = float(reward_scale)
        self.jaxmarl_env = smax.HeuristicEnemySMAX(scenario=scenario, max_steps=max_steps, **kwargs)
        inner = self.jaxmarl_env._env
        if map_name in RACE_MAPS:
            inner.unit_type_generator = RaceUnitTypes(inner.num_allies, inner.num_enemies, RACE_MAPS[map_name][2])
        self.n_allies = inner.num_allies
        self.spec = EnvSpec(
            name=f"smax_{map_name}",
            n_agents=inner.num_allies,
            obs_dim=inner.obs_size,
            state_dim=inner.state_size,
            n_actions=inner.num_ally_actions,
            episode_limit=int(max_steps),
            info_keys=("won",),
        )

    def _timestep(self, env_state, obs, reward=0.0, first=False):
        env = self.jaxmarl_env
        avail = env.get_avail_actions(env_state)
        arrays = dict(
            obs=jnp.stack([obs[a] for a in env.agents]),
            state=obs["world_state"],
            avail=jnp.stack([avail[a] for a in env.agents]),
        )
        if first:
            return make_timestep(self.spec, **arrays)
        alive = env_state.state.unit_alive
        allies_dead = ~jnp.any(alive[: self.n_allies])
        enemies_dead = ~jnp.any(alive[self.n_allies :])
        terminated = allies_dead | enemies_dead
        truncated = (env_state.state.step >= self.spec.episode_limit) & ~terminated
        won = enemies_dead & ~allies_dead
        return make_timestep(self.spec, **arrays, reward=reward, terminated=terminated,
                             truncated=truncated, info={"won": won})  # fmt: skip

    def reset(self, key: jax.Array):
        obs, env_state = self.jaxmarl_env.reset(key)
        return env_state, self._timestep(env_state, obs, first=True)

    def step(self, key: jax.Array, env_state, actions: jax.Array):
        env = self.jaxmarl_env
        # step_env, not step: jaxmarl's step auto-resets, which AutoReset does for us.
        obs, env_state, rewards, _, _ = env.step_env(key, env_state, {a: actions[i] for i, a in enumerate(env.agents)})
        return env_state, self._timestep(env_state, obs, rewards[env.agents[0]] * self.reward_scale)


MAP_NAMES = JAXMARL_MAPS + tuple(FIXED_MAPS) + tuple(RACE_MAPS)

for _map in MAP_NAMES:
    register(f"smax_{_map}", functools.partial(SmaxEnv, _map))
for _map, _unit in UNSUPPORTED.items():
    register_unsupported(
        f"smax_{_map}",
        f"SMAX has no {_unit} unit (it has marine, marauder, stalker, zealot, zergling, hydralisk); "
        f"use env=smac_{_map} for real StarCraft II through the smac package",
    )
