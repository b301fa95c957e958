"""SMAX (jaxmarl's JAX StarCraft) behind the array contract.

`smax_<map>` wraps jaxmarl's `HeuristicEnemySMAX`: our agents are the allies;
the enemies follow jaxmarl's scripted heuristic (shoot the closest unit in
range, otherwise walk towards the allies' side or chase a unit in sight).

Observed: each ally sees, for every other unit *within its sight range* (8-10
map units by type), its health, relative position, last move and attack,
weapon cooldown and type, plus its own health, absolute position, cooldown and
type. Units out of sight, and dead units, read as zeros; a dead ally sees
only zeros. Hidden from the agents: every unit out of sight range, the
enemies' heuristic targets (and their last actions if `see_enemy_actions` is
False). The global state (jaxmarl's `world_state`) has
every unit: health, absolute position, cooldown, type one-hot, then every
unit's team and type.

Reward: jaxmarl's ally team reward (enemy health fraction removed, plus
`won_battle_bonus` on a win; at most 2 per episode) x `reward_scale` (default
10, SMAC's scale of 20). `terminated` = one team all dead; `truncated` = the
`max_steps` time limit. info `won` = all enemies dead with an ally alive (both
teams dead at once is a draw, as in SMAC).

Maps on this adapter (jaxmarl's own engine, so their observations, state and
behaviour are jaxmarl's: earlier results and checkpoints stay valid): every scenario
jaxmarl registers (its smacv2_<n>_units draw each unit from all six types, mixing
races, unlike SMACv2), plus 3s_vs_3z, 3s_vs_4z, 8m_vs_9m, 2m_vs_1z (SMAC's unit lists on
SMAX's map). SMAX unit indices: 0 marine, 1 marauder, 2 stalker, 3 zealot,
4 zergling, 5 hydralisk.

Maps that need terrain, the medivac, colossus or baneling, or SMACv2's three-type race
pools (corridor, MMM, MMM2, 1c3s5z, 2c_vs_64zg, bane_vs_bane, so_many_baneling,
<race>_<n>v<m>) run on our world rules: `smax_world.py`, catalogue in `smax_maps.py`.
Only 2s_vs_1sc (a spine crawler, a building) stays unsupported, pointing to
`env=smac_2s_vs_1sc` (real StarCraft II through the smac package).

Extras: `ally_visibility` bool [n_allies, n_allies], entry [i, j] true when ally i
sees ally j this step, by SMAX's observation rule (both alive, distance < i's sight
range), so it matches what i's observation shows; the diagonal is "i alive".
"""

from __future__ import annotations

import functools
import inspect
import io
import sys
import threading

import jax
import jax.numpy as jnp

from jlmarl.envs import smax_maps, smax_units
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
    "3s_vs_3z": ((STALKER,) * 3, (ZEALOT,) * 3),
    "3s_vs_4z": ((STALKER,) * 3, (ZEALOT,) * 4),
    "8m_vs_9m": ((MARINE,) * 8, (MARINE,) * 9),
    "2m_vs_1z": ((MARINE,) * 2, (ZEALOT,)),
}
# Maps with terrain, the new units or SMACv2's race pools: our world rules (smax_world.py).
WORLD_MAPS = tuple(smax_maps.MAPS)
DEFAULT_MAX_STEPS = 100
UNSUPPORTED = {"2s_vs_1sc": "spine crawler"}
# Set by the map, or by the contract's discrete actions: not constructor kwargs.
_NOT_PASSED = {
    "scenario",
    "num_allies",
    "num_enemies",
    "smacv2_position_generation",
    "smacv2_unit_type_generation",
    "action_type",
    "max_steps",
}


def ally_visibility(positions: jax.Array, alive: jax.Array, sight: jax.Array, n_allies: int) -> jax.Array:
    """bool [n_allies, n_allies]: [i, j] = ally i sees ally j this step.

    SMAX's rule for what enters i's observation (`get_obs_unit_list`): both alive and
    |pos_j - pos_i| < sight range of i's type. Not symmetric when sight ranges differ;
    the diagonal is i alive (distance 0 is always in sight).
    positions [n_units, 2], alive [n_units] bool, sight [n_units] (per unit, by type).
    """
    pos, live = positions[:n_allies], alive[:n_allies]
    dist = jnp.linalg.norm(pos[None, :, :] - pos[:, None, :], axis=-1)  # [i, j]
    return (dist < sight[:n_allies, None]) & live[:, None] & live[None, :]


def normalised_state(world_state: jax.Array, world) -> jax.Array:
    """jaxmarl's world_state with positions in [-1, 1] around the map centre and
    cooldowns clipped at 0; the trailing team and type integers are dropped
    (teams are fixed by unit order, types are already one-hot). Raw map
    coordinates (0..32) would blow up QMIX's hypernetworks.
    world: the jaxmarl SMAX engine (unit count, features, map size)."""
    n_units, n_feat = world.num_agents, len(world.own_features)
    f = world_state[: n_units * n_feat].reshape(n_units, n_feat)
    half = jnp.array([world.map_width, world.map_height], jnp.float32) / 2
    alive = f[:, :1] > 0  # dead units read as all zeros; keep them so
    pos = jnp.where(alive, (f[:, 1:3] - half) / half, 0.0)
    return jnp.concatenate([f[:, :1], pos, jnp.maximum(f[:, 3:4], 0.0), f[:, 4:]], axis=-1).reshape(-1)


_IMPORT_LOCK = threading.Lock()


def _import_jaxmarl_smax():
    # jaxmarl prints on import, after its mabrax module has reset sys.stdout/stderr to
    # sys.__stdout__/__stderr__: redirect_stdout alone cannot silence it, so swap those too
    # (under a lock: two threads swapping at once would leave stdout pointing at a buffer).
    with _IMPORT_LOCK:
        if "jaxmarl.environments.smax" not in sys.modules:
            saved = sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__
            sys.stdout = sys.__stdout__ = io.StringIO()
            sys.__stderr__ = sys.stderr
            try:
                import jaxmarl.environments.smax  # noqa: F401
            finally:
                sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__ = saved
    return sys.modules["jaxmarl.environments.smax"]


class SmaxEnv:
    """`HeuristicEnemySMAX` on `map_name`; other kwargs go to jaxmarl's SMAX / HeuristicEnemySMAX."""

    def __init__(self, map_name: str, max_steps: int | None = None, reward_scale: float = 10.0, **kwargs):
        smax = _import_jaxmarl_smax()
        accepted = {
            p
            for cls in (smax.SMAX, smax.HeuristicEnemySMAX)
            for p in inspect.signature(cls.__init__).parameters
            if p not in _NOT_PASSED | {"self", "env_kwargs"}
        }
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise TypeError(
                f"smax_{map_name}: unexpected keyword argument(s) {', '.join(unknown)}; "
                f"accepted: max_steps, reward_scale, {', '.join(sorted(accepted))}"
            )
        if max_steps is None:
            max_steps = DEFAULT_MAX_STEPS

        if map_name in JAXMARL_MAPS:
            scenario = smax.map_name_to_scenario(map_name)
        elif map_name in FIXED_MAPS:
            allies, enemies = FIXED_MAPS[map_name]
            types = jnp.array(allies + enemies, jnp.uint8)
            scenario = smax.Scenario(types, len(allies), len(enemies), False, False)
        else:
            raise ValueError(f"unknown SMAX map {map_name!r}; maps: {', '.join(MAP_NAMES)}")

        self.map_name = map_name
        self.reward_scale = float(reward_scale)
        self.jaxmarl_env = smax.HeuristicEnemySMAX(scenario=scenario, max_steps=max_steps, **kwargs)
        inner = self.jaxmarl_env._env
        self.type_names = smax_units.SMAX_TYPES  # SMAX's six type bits
        self.terrain = None  # SMAX's open arena
        self.spec = EnvSpec(
            name=f"smax_{map_name}",
            n_agents=inner.num_allies,
            obs_dim=inner.obs_size,
            state_dim=inner.num_agents * len(inner.own_features),
            n_actions=inner.num_ally_actions,
            episode_limit=int(max_steps),
            info_keys=("won",),
            extras=(("ally_visibility", (inner.num_allies, inner.num_allies), "bool"),),
        )

    @property
    def world(self):
        """jaxmarl's SMAX engine under the heuristic-enemy wrapper (unit tables, map size)."""
        return self.jaxmarl_env._env

    def _observe(self, env_state, obs) -> dict:
        agents = self.jaxmarl_env.agents
        avail = self.jaxmarl_env.get_avail_actions(env_state)
        s = env_state.state
        sight = self.jaxmarl_env._env.unit_type_sight_ranges
        return dict(
            obs=jnp.stack([obs[a] for a in agents]),
            state=normalised_state(obs["world_state"], self.world),
            avail=jnp.stack([avail[a] for a in agents]),
            extras={
                "ally_visibility": ally_visibility(
                    s.unit_positions, s.unit_alive, sight[s.unit_types], self.spec.n_agents
                )
            },
        )

    def reset(self, key: jax.Array):
        obs, env_state = self.jaxmarl_env.reset(key)
        return env_state, make_timestep(self.spec, **self._observe(env_state, obs))

    def step(self, key: jax.Array, env_state, actions: jax.Array):
        agents = self.jaxmarl_env.agents
        # step_env, not step: jaxmarl's step auto-resets, which is AutoReset's job here.
        obs, env_state, rewards, _, _ = self.jaxmarl_env.step_env(
            key, env_state, {a: actions[i] for i, a in enumerate(agents)}
        )
        n = self.spec.n_agents
        allies_dead = ~jnp.any(env_state.state.unit_alive[:n])
        enemies_dead = ~jnp.any(env_state.state.unit_alive[n:])
        terminated = allies_dead | enemies_dead
        return env_state, make_timestep(
            self.spec,
            **self._observe(env_state, obs),
            reward=rewards[agents[0]] * self.reward_scale,  # the team reward, the same for every ally
            terminated=terminated,
            truncated=(env_state.state.step >= self.spec.episode_limit) & ~terminated,
            info={"won": enemies_dead & ~allies_dead},  # both teams dead at once is a draw
        )


MAP_NAMES = JAXMARL_MAPS + tuple(FIXED_MAPS) + WORLD_MAPS


def _make_world_env(map_name: str, **kwargs):
    from jlmarl.envs.smax_world import SmaxWorldEnv  # imports jaxmarl: only when built

    return SmaxWorldEnv(map_name, **kwargs)


for _map in JAXMARL_MAPS + tuple(FIXED_MAPS):
    register(f"smax_{_map}", functools.partial(SmaxEnv, _map))
for _map in WORLD_MAPS:
    register(f"smax_{_map}", functools.partial(_make_world_env, _map))
for _map, _unit in UNSUPPORTED.items():
    register_unsupported(
        f"smax_{_map}",
        f"SMAX has no {_unit} (a building); use env=smac_{_map} for real StarCraft II through smac",
    )
