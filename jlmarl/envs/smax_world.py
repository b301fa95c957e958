"""SMAX beyond SMAX: terrain and the medivac, colossus and baneling, behind the array contract.

`SmaxWorld` subclasses jaxmarl's `SMAX` and replaces the rules that need the new
units or terrain (movement, attacks, collisions, the end of a battle, the reward,
avail); observation features and the world state are jaxmarl's own, over the map's
unit table. `SmaxWorldEnv` runs it against our scripted enemy (`enemy_actions`), which
navigates by precomputed shortest paths. Maps: `smax_maps.MAPS`.

Observation / state layout. The type one-hot has one bit per unit type *of the map*
(`MapSpec.type_names`: the types present, or the race pool), SMAC's per-map unit-type
bits, and unit types in the state are indices into that list. The maps jaxmarl can
express (smax_3m, smax_2s3z, ...) stay on `smax.SmaxEnv`, jaxmarl's own engine with
its six type bits: their observations, state and behaviour are unchanged. So
per-unit features are health, relative position, last move, last target, cooldown and
the map's type bits (obs), and health, position, cooldown and type bits (state), as in
`smax.py`. No pathing values are observed (SMAC's default `obs_pathing_grid=False`).

Rules for the new units (statistics and their sources: `smax_units.py`):
- medivac: flies (ignores terrain, collides only with air), never attacks; its attack
  actions pick a heal target among its own team, SMAC's convention: for an ally
  medivac, attack action 5 + k heals ally k. A heal restores `heal_rate` HP per
  second (12.6; 6.3 per env step) up to the target's maximum, to ground units only
  (SMAC: medivacs cannot heal themselves or other flying units). No energy.
- colossus: ground-only line splash (smax_units), walks cliffs (not walls).
- baneling: melee (range 1.0); when its attack lands it damages every enemy ground unit
  whose body is within 2.2 of its centre (by 35 if light, else 16) and its own health
  drops to 0. Killed, it bursts the same way (SC2 detonates a baneling however it dies);
  bursts chain within a world step.
- Damage: SC2's bonuses for every unit, by one rule (`smax_units.damage_table`): an attack
  deals the attacker's damage plus its bonus to a unit with the bonus attribute (the
  baneling's +19 vs light, the marauder's +10 vs armored, ...); splash victims each by
  their own attributes. `MapSpec.damage_bonuses` (on for every map of `smax_maps.MAPS`)
  turns it off; jaxmarl's maps run on jaxmarl's engine, which has no bonuses.
- Units do not walk into one another: a move that would newly overlap a unit of the
  same layer slides along it (loses its component towards it), or is undone if that
  still overlaps. SMAX only pushes overlapping units apart afterwards, which lets a
  crowd compress and shove without limit.
- Flying targets can be attacked only by units with `hits_air` (marine, stalker,
  hydralisk); melee units cannot attack across a cliff.
- A team whose living units are all medivacs has lost (SMAC's `only_medivac_left`).
- Reward: jaxmarl's, but the enemies' health loss counts net of heals and at least 0
  (jaxmarl takes the absolute value of the sum, which would pay for enemy heals).
Terrain rules: `smax_terrain.py`.

Observed / hidden and the extras are as in `smax.py` (`ally_visibility` by the same
sight rule); info `won` = the enemies have lost and the allies have not.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jlmarl.envs import smax_terrain
from jlmarl.envs.base import EnvSpec, make_timestep
from jlmarl.envs.smax import _import_jaxmarl_smax, ally_visibility, normalised_state
from jlmarl.envs.smax_maps import MAPS, RACE_POOLS, MapSpec
from jlmarl.envs.smax_units import LINE, RADIUS, SINGLE, UNITS, damage_table, unit_table

_smax = _import_jaxmarl_smax()
SMAX = _smax.SMAX
N_MOVES = 5  # SMAX's 4 moves + stop; attack action k targets unit slot k - N_MOVES
STOP = 4
# SMAX's move actions 0..3 as unit vectors (north, east, south, west).
MOVE_VECTORS = jnp.array([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]])


def draw_race_types(key: jax.Array, weights: jax.Array, n_allies: int, n_enemies: int) -> jax.Array:
    """uint8 [n_allies + n_enemies]: SMACv2's unit types, indices into the race pool.

    Each ally drawn from `weights`; the enemies mirror the allies, and enemies beyond the
    allies' count get their own draws from the same weights. (jaxmarl's
    UniformUnitTypeDistribution drops the `.at[].set` of those extras, leaving them type 0.)"""
    ally_key, extra_key = jax.random.split(key)
    logits = jnp.log(weights)
    allies = jax.random.categorical(ally_key, logits, shape=(n_allies,))
    extras = jax.random.categorical(extra_key, logits, shape=(max(n_enemies - n_allies, 0),))
    enemies = jnp.concatenate([allies, extras])[:n_enemies]
    return jnp.concatenate([allies, enemies]).astype(jnp.uint8)


def segment_distance(points: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """Distance of points [..., 2] from the segment a-b ([2] each)."""
    ab = b - a
    t = jnp.clip(jnp.dot(points - a, ab) / jnp.maximum(jnp.dot(ab, ab), 1e-9), 0.0, 1.0)
    return jnp.linalg.norm(points - (a + t[..., None] * ab), axis=-1)


class SmaxWorld(SMAX):
    """jaxmarl's SMAX with a per-map unit table, terrain and the new units' rules."""

    def __init__(
        self,
        spec: MapSpec,
        max_steps: int,
        terrain: bool = True,
        damage_bonuses: bool | None = None,
        **kwargs,
    ):
        names = spec.type_names
        table = unit_table(names)
        damage = damage_table(names, spec.damage_bonuses if damage_bonuses is None else damage_bonuses)
        grid = spec.grid() if terrain else smax_terrain.open_grid(32, 32)
        super().__init__(
            num_allies=len(spec.allies),
            num_enemies=len(spec.enemies),
            map_width=grid.shape[0],
            map_height=grid.shape[1],
            unit_type_names=list(names),
            unit_type_shorthands=[UNITS[n].glyph for n in names],
            unit_type_velocities=jnp.asarray(table["speed"], jnp.float32),
            unit_type_attacks=jnp.asarray(table["damage"], jnp.float32),
            unit_type_attack_ranges=jnp.asarray(table["attack_range"], jnp.float32),
            unit_type_sight_ranges=jnp.asarray(table["sight"], jnp.float32),
            unit_type_radiuses=jnp.asarray(table["radius"], jnp.float32),
            unit_type_health=jnp.asarray(table["health"], jnp.float32),
            unit_type_weapon_cooldowns=jnp.asarray(table["cooldown"], jnp.float32),
            max_steps=max_steps,
            **kwargs,
        )
        self.spec_map = spec
        self.table = {k: jnp.asarray(v) for k, v in table.items()}
        self.grid_np = grid
        self.grid = jnp.asarray(grid)
        self.has_terrain = bool((grid != smax_terrain.LOW).any())
        self.has_splash = bool((table["splash"] != SINGLE).any())
        self.has_suicide = bool(table["suicide"].any())
        # [attacker type, target type] damage per attack; static: a map where no attacker's
        # damage depends on its target (corridor: zealots and zerglings) skips the [n, n] lookup.
        self.damage = jnp.asarray(damage, jnp.float32)
        self.pair_damage = bool((damage != damage[:, :1]).any())
        if self.has_terrain:  # path tables only where there is something to path around
            self.paths_ground = jnp.asarray(smax_terrain.path_lengths(grid, walks_cliffs=False))
            self.paths_cliffs = jnp.asarray(smax_terrain.path_lengths(grid, walks_cliffs=True))
        heals = table["heal_rate"] > 0
        if spec.race is None:
            index = {n: i for i, n in enumerate(names)}
            self.fixed_types = jnp.array([index[n] for n in spec.allies + spec.enemies], jnp.uint8)
            if any(heals[index[n]] for n in spec.allies) and self.num_allies > self.num_enemies:
                raise ValueError(f"{spec.name}: an ally medivac needs as many attack slots as allies")
        else:
            self.race_weights = jnp.asarray(RACE_POOLS[spec.race][1], jnp.float32)

    # --- reset ---------------------------------------------------------------------------------

    def _start_positions(self, key: jax.Array) -> jax.Array:
        """[n_units, 2] start positions by the map's `starts` rule."""
        spec, n_a, n_e = self.spec_map, self.num_allies, self.num_enemies
        if spec.starts == "surround_reflect":
            return self.position_generator.generate(key)
        if spec.starts == "boxes":
            k_a, k_e = jax.random.split(key)

            def box(k, b, n):
                return jax.random.uniform(k, (n, 2), minval=jnp.array(b[0::2]), maxval=jnp.array(b[1::2]))

            return jnp.concatenate([box(k_a, spec.ally_box, n_a), box(k_e, spec.enemy_box, n_e)])
        k_a, k_e = jax.random.split(key)
        centre_a = jnp.array([self.map_width / 4, self.map_height / 2])
        centre_e = jnp.array([self.map_width * 3 / 4, self.map_height / 2])
        noise_a = jax.random.uniform(k_a, (n_a, 2), minval=-2, maxval=2)
        noise_e = jax.random.uniform(k_e, (n_e, 2), minval=-2, maxval=2)
        return jnp.concatenate([centre_a + noise_a, centre_e + noise_e])

    def reset(self, key: jax.Array):
        k_pos, k_types = jax.random.split(key)
        if self.spec_map.race is None:
            types = self.fixed_types
        else:
            types = draw_race_types(k_types, self.race_weights, self.num_allies, self.num_enemies)
        n = self.num_agents
        state = _smax.smax_env.State(
            unit_positions=self._start_positions(k_pos),
            unit_alive=jnp.ones((n,), jnp.bool_),
            unit_teams=(jnp.arange(n) >= self.num_allies).astype(jnp.float32),
            unit_health=self.table["health"][types].astype(jnp.float32),
            unit_types=types,
            unit_weapon_cooldowns=jnp.zeros((n,)),
            prev_movement_actions=jnp.zeros((n, 2)),
            prev_attack_actions=jnp.zeros((n,), jnp.int32),
            step=jnp.array(0),
            done=jnp.array(False),
        )
        state = self._push_units_away(state)
        obs = self.get_obs(state)
        obs["world_state"] = self.get_world_state(state)
        return obs, state

    # --- rules ---------------------------------------------------------------------------------

    def unit_stat(self, state, name: str) -> jax.Array:
        """[n_units] the table's `name` for each unit's type."""
        return self.table[name][state.unit_types]

    def attack_target(self, idx: jax.Array, action: jax.Array, heals: jax.Array) -> jax.Array:
        """Unit index that `action` (>= N_MOVES) of unit `idx` aims at.

        Allies: attack slot k = enemy k, heal slot k = ally k (SMAC). Enemies: attack slot
        k = ally n_allies - 1 - k (SMAX's reversed order), heal slot k = enemy k."""
        k = action - N_MOVES
        ally = idx < self.num_allies
        same_team = jnp.where(ally, k, self.num_allies + k)
        other_team = jnp.where(ally, self.num_allies + k, self.num_allies - 1 - k)
        return jnp.clip(jnp.where(heals, same_team, other_team), 0, self.num_agents - 1)

    def can_target(self, state, idx, target) -> jax.Array:
        """bool: unit idx may act on unit target now (range, liveness, team, air, cliffs);
        broadcasts over idx and target. Ignores weapon cooldown."""
        pos, teams = state.unit_positions, state.unit_teams
        heals = self.unit_stat(state, "heal_rate")[idx] > 0
        flying = self.unit_stat(state, "flying")[target]
        dist = jnp.linalg.norm(pos[target] - pos[idx], axis=-1)
        in_range = dist < self.unit_stat(state, "attack_range")[idx]
        live = state.unit_alive[idx] & state.unit_alive[target] & (idx != target)
        same_team = teams[idx] == teams[target]
        heal_ok = same_team & ~flying
        melee = self.unit_stat(state, "melee")[idx]
        cliff = smax_terrain.across_cliff(self.grid, pos[idx], pos[target])
        attack_ok = ~same_team & (~flying | self.unit_stat(state, "hits_air")[idx]) & ~(melee & cliff)
        return live & in_range & jnp.where(heals, heal_ok, attack_ok)

    def _world_step(self, key, state, actions):
        # [n, 2] move vectors, [n] attack actions (0 = none); optionally [n, 2] points that
        # the scripted enemy walks to and [n] bool which units do (their move re-planned here).
        move_vecs, attack_actions = actions[:2]
        n = self.num_agents
        idx = jnp.arange(n)
        pos = state.unit_positions
        if len(actions) == 4 and self.has_terrain:
            points, navigating = actions[2:]
            planned = MOVE_VECTORS[self.heading(state, idx, points)]
            move_vecs = jnp.where(navigating[:, None], planned, move_vecs)
        flying = self.unit_stat(state, "flying")
        cliffs = self.unit_stat(state, "walks_cliffs")

        # Movement: SMAX's, then terrain (a blocked axis is undone), dead units stay.
        new_pos = pos + move_vecs * self.unit_stat(state, "speed")[:, None] * self.time_per_step
        new_pos = jnp.clip(new_pos, 0.0, jnp.array([self.map_width, self.map_height], jnp.float32))
        new_pos = smax_terrain.move(self.grid, pos, new_pos, flying, cliffs)
        # Units do not walk into one another (SC2's bodies are solid): a step that ends
        # closer to a living unit of the same layer than their radii, and closer than it
        # was, is undone. Without it (SMAX's rule) a crowd compresses without limit and
        # pushes whatever it walks into: 24 zerglings shove two zealots out of a choke.
        # A bumping unit slides instead: the step loses its component towards the nearest unit
        # it bumps, and is undone only if that still bumps (or breaks the terrain rule).
        radius = self.unit_stat(state, "radius")
        others = state.unit_alive[None, :] & (flying[:, None] == flying[None, :]) & ~jnp.eye(n, dtype=bool)
        touching = radius[:, None] + radius[None, :]
        before = jnp.linalg.norm(pos[:, None] - pos[None, :], axis=-1)  # [i, j]

        def bumps(candidate):  # [i, j]: i's candidate position newly overlaps j
            after = jnp.linalg.norm(candidate[:, None] - pos[None, :], axis=-1)
            return others & (after < touching) & (after < before), after

        bumped, after = bumps(new_pos)
        nearest = jnp.argmin(jnp.where(bumped, after, jnp.inf), axis=1)
        away = pos - pos[nearest]
        away = away / jnp.maximum(jnp.linalg.norm(away, axis=-1, keepdims=True), 1e-6)
        step = new_pos - pos
        slide = pos + step - jnp.minimum(jnp.sum(step * away, -1, keepdims=True), 0.0) * away
        slide = smax_terrain.move(self.grid, pos, slide, flying, cliffs)
        hit = jnp.any(bumped, axis=1)
        new_pos = jnp.where(hit[:, None], slide, new_pos)
        still = hit & jnp.any(bumps(new_pos)[0], axis=1)
        new_pos = jnp.where(still[:, None] | ~state.unit_alive[:, None], pos, new_pos)

        # Attacks and heals from the positions before the move (as SMAX does).
        heals = self.unit_stat(state, "heal_rate") > 0
        target = self.attack_target(idx, attack_actions, heals)
        ready = state.unit_weapon_cooldowns <= 0.0
        acts = (attack_actions >= N_MOVES) & self.can_target(state, idx, target)
        hits = acts & (ready | heals)  # heals are continuous, weapons wait for their cooldown
        # victims[a, v]: unit a's attack (or heal) this world step reaches unit v.
        victims = jax.nn.one_hot(target, n, dtype=bool)
        if self.has_splash:  # static: maps without colossi or banelings skip the [n, n] geometry
            splash = self.unit_stat(state, "splash")
            size = self.unit_stat(state, "splash_size")[:, None]
            enemy_ground = (state.unit_teams[:, None] != state.unit_teams[None, :]) & ~flying[None, :]
            enemy_ground &= state.unit_alive[None, :]
            aim = pos[target] - pos
            aim = aim / jnp.maximum(jnp.linalg.norm(aim, axis=-1, keepdims=True), 1e-9)
            across = (
                jnp.stack([-aim[:, 1], aim[:, 0]], -1) * self.unit_stat(state, "line_half_length")[:, None]
            )
            line_dist = jax.vmap(segment_distance, in_axes=(None, 0, 0))(
                pos, pos[target] - across, pos[target] + across
            )  # [attacker, victim]
            line = victims | (enemy_ground & (line_dist <= size))
            # SC2's search areas count a unit's body: the blast reaches a victim whose edge is
            # within the radius of the baneling's centre.
            blast = enemy_ground & (before - radius[None, :] <= size)
            victims = jnp.where(
                (splash == LINE)[:, None], line, jnp.where((splash == RADIUS)[:, None], blast, victims)
            )
        if self.pair_damage:  # [attacker, victim]: base damage + the bonus for the victim's attributes
            damage = self.damage[state.unit_types[:, None], state.unit_types[None, :]]
        else:
            damage = self.unit_stat(state, "damage")[:, None]
        heal = -self.unit_stat(state, "heal_rate") * self.time_per_step
        amount = jnp.where(heals[:, None], heal[:, None], damage)
        effect = jnp.where(hits[:, None] & victims, amount, 0.0)
        health = state.unit_health - effect.sum(0)
        health = jnp.clip(health, 0.0, self.unit_stat(state, "health"))
        suicide = self.unit_stat(state, "suicide")
        health = jnp.where(hits & suicide, 0.0, health)
        if self.has_suicide:
            health = self._death_bursts(state, health, hits & suicide, blast, damage)

        # Cooldowns: SMAX's (reset with pysc2's random deviation on a shot, else count down).
        deviation = jax.vmap(
            lambda k: jax.random.uniform(k, minval=-self.time_per_step, maxval=2 * self.time_per_step)
        )(jax.random.split(key, n))
        fired = hits & ~heals
        cooldowns = jnp.where(
            fired,
            self.unit_stat(state, "cooldown") + deviation,
            state.unit_weapon_cooldowns - self.time_per_step,
        )
        return state.replace(unit_positions=new_pos, unit_health=health, unit_weapon_cooldowns=cooldowns)

    def _death_bursts(self, state, health, burst, blast, damage):
        """SC2: a baneling also bursts when it is killed, not only when it attacks (same
        blast, same damage). A burst can kill an enemy baneling, which bursts in turn:
        repeated within the world step until no killed baneling is left unburst.
        burst: bool [n], the banelings that burst by attacking this world step."""
        suicide = self.unit_stat(state, "suicide")

        def killed(carry):
            health, burst = carry
            return suicide & state.unit_alive & (health <= 0.0) & ~burst

        def burst_round(carry):
            health, burst = carry
            new = killed(carry)
            health = health - jnp.where(new[:, None] & blast, damage, 0.0).sum(0)
            return jnp.maximum(health, 0.0), burst | new

        return jax.lax.while_loop(lambda c: jnp.any(killed(c)), burst_round, (health, burst))[0]

    def _push_units_away(self, state, firmness: float = 1.0):
        """SMAX's soft collisions (overlapping living units move apart, each by half the
        overlap), between units of one layer only (air or ground), then terrain."""
        flying = self.unit_stat(state, "flying")
        pairs = state.unit_alive[:, None] & state.unit_alive[None, :] & (flying[:, None] == flying[None, :])
        delta = state.unit_positions[:, None] - state.unit_positions[None, :]  # [i, j]: i - j
        dist = jnp.linalg.norm(delta, axis=-1) + jnp.identity(self.num_agents) + 1e-6
        radius = self.unit_stat(state, "radius")
        overlap = jnp.where(pairs, jax.nn.relu((radius[:, None] + radius[None, :]) / dist - 1.0), 0.0)
        pushed = state.unit_positions + firmness * jnp.sum(delta * overlap[..., None], axis=1) / 2
        pushed = smax_terrain.move(
            self.grid, state.unit_positions, pushed, flying, self.unit_stat(state, "walks_cliffs")
        )
        return state.replace(
            unit_positions=jnp.where(state.unit_alive[:, None], pushed, state.unit_positions)
        )

    def team_lost(self, state) -> jax.Array:
        """bool [2]: team 0 (allies), team 1 (enemies) has no living unit but medivacs."""
        fighting = state.unit_alive & (self.unit_stat(state, "heal_rate") == 0)
        allies = jnp.arange(self.num_agents) < self.num_allies
        return jnp.stack([~jnp.any(fighting & allies), ~jnp.any(fighting & ~allies)])

    def is_terminal(self, state):
        return jnp.any(self.team_lost(state)) | (state.step >= self.max_steps)

    def compute_reward(self, state, health_before, health_after):
        lost = self.team_lost(state)
        enemies = slice(self.num_allies, None)
        loss = (health_before - health_after)[enemies] / self.unit_stat(state, "health")[enemies]
        reward = jnp.maximum(loss.sum(), 0.0) / self.num_enemies
        reward += jnp.where(lost[1] & ~lost[0], self.won_battle_bonus, 0.0)
        return {agent: reward for agent in self.agents}

    def _observe_features(self, state, i, j_idx):
        """jaxmarl's features of unit j_idx seen by i, with the last-target feature clipped to 1:
        an enemy medivac on a map with more enemies than allies (MMM2) heals past its team's
        attack slots, which jaxmarl's normalisation assumes."""
        features = super()._observe_features(state, i, j_idx)
        return features.at[5].min(1.0)

    def get_obs(self, state):
        """The allies' observations (jaxmarl's unit-list features); the enemies act on the state."""
        n = self.num_agents
        sight = self.unit_stat(state, "sight")

        def observe(i):
            others = jnp.arange(n - 1)
            j = others + (others >= i)  # every unit but i, in index order
            features = jax.vmap(self._observe_features, in_axes=(None, None, 0))(state, i, j)
            dist = jnp.linalg.norm(state.unit_positions[j] - state.unit_positions[i], axis=-1)
            visible = (dist < sight[i]) & state.unit_alive[i] & state.unit_alive[j]
            own = self._get_own_features(state, i)
            return jnp.concatenate([jnp.where(visible[:, None], features, 0.0).reshape(-1), own])

        obs = jax.vmap(observe)(jnp.arange(self.num_allies))
        return {agent: obs[i] for i, agent in enumerate(self.agents[: self.num_allies])}

    def ally_avail(self, state) -> jax.Array:
        """bool [n_allies, N_MOVES + n_enemies]: moves when alive, stop always, and the
        attack (or, for a medivac, heal) slots whose target `can_target` allows."""
        n_a, n_e = self.num_allies, self.num_enemies
        allies = jnp.arange(n_a)
        heals = self.unit_stat(state, "heal_rate")[:n_a] > 0
        actions = N_MOVES + jnp.arange(n_e)
        targets = self.attack_target(allies[:, None], actions[None, :], heals[:, None])
        slots = self.can_target(state, allies[:, None], targets)
        slots &= ~(heals[:, None] & (actions[None, :] - N_MOVES >= n_a))  # heal slots past the allies
        moves = jnp.broadcast_to(state.unit_alive[:n_a, None], (n_a, STOP))
        return jnp.concatenate([moves, jnp.ones((n_a, 1), bool), slots], axis=1)

    def get_avail_actions(self, state):
        avail = self.ally_avail(state)
        return {agent: avail[i] for i, agent in enumerate(self.agents[: self.num_allies])}

    # --- the scripted enemy -------------------------------------------------------------------

    def heading(self, state, units: jax.Array, targets: jax.Array) -> jax.Array:
        """Move action (0-3) taking each unit towards its target point [len(units), 2]:
        straight for flyers, without terrain, within the target's cell or when no path
        exists; else to the steppable 4-neighbour cell with the shortest path to the
        target's cell (ties broken towards the straight line). Re-decided every world
        step (`_world_step`), since a cell is crossed in a few world steps."""
        pos = state.unit_positions[units]
        to_target = targets - pos
        straight = jnp.argmax(to_target @ MOVE_VECTORS.T, axis=-1)
        if not self.has_terrain:
            return straight
        height = self.grid.shape[1]
        cx, cy = smax_terrain.cell_of(self.grid, pos)
        tx, ty = smax_terrain.cell_of(self.grid, targets)
        steps = MOVE_VECTORS.astype(jnp.int32)
        nx = jnp.clip(cx[:, None] + steps[None, :, 0], 0, self.grid.shape[0] - 1)  # [unit, direction]
        ny = jnp.clip(cy[:, None] + steps[None, :, 1], 0, height - 1)
        cliffs = self.unit_stat(state, "walks_cliffs")[units]
        target_id = (tx * height + ty)[:, None]
        lengths = jnp.where(
            cliffs[:, None],
            self.paths_cliffs[nx * height + ny, target_id],
            self.paths_ground[nx * height + ny, target_id],
        )
        here, there = self.grid[cx, cy][:, None], self.grid[nx, ny]
        cliff = ((here == smax_terrain.LOW) & (there == smax_terrain.HIGH)) | (
            (here == smax_terrain.HIGH) & (there == smax_terrain.LOW)
        )
        steppable = (there != smax_terrain.WALL) & (cliffs[:, None] | ~cliff)
        lengths = jnp.where(steppable, lengths, smax_terrain.UNREACHABLE)
        alignment = (to_target @ MOVE_VECTORS.T) / jnp.maximum(
            jnp.linalg.norm(to_target, axis=-1, keepdims=True), 1e-6
        )
        by_path = jnp.argmin(lengths.astype(jnp.float32) - 0.1 * alignment, axis=-1)
        same_cell = (cx == tx) & (cy == ty)
        unreachable = jnp.min(lengths, axis=-1) >= smax_terrain.UNREACHABLE
        flying = self.unit_stat(state, "flying")[units]
        return jnp.where(flying | same_cell | unreachable, straight, by_path)

    def enemy_actions(self, state, last_target: jax.Array, goals: jax.Array):
        """The scripted enemy, jaxmarl's heuristic on the state with terrain and the new units:
        attack the last target while it stays attackable, else the closest attackable ally;
        otherwise chase the closest ally in sight, else head for the goal. A medivac heals the
        most injured teammate in range, else follows its closest fighting teammate.
        last_target [n_enemies] unit index or -1; goals [n_enemies, 2].
        Returns actions [n_enemies] in SMAX's enemy encoding, last_target, and the points
        [n_enemies, 2] that the moving ones (bool [n_enemies]) walk to, re-planned each world step."""
        n_a, n = self.num_allies, self.num_agents
        enemies = jnp.arange(n_a, n)
        pos = state.unit_positions
        heals = self.unit_stat(state, "heal_rate")[enemies] > 0
        # Attacks: [enemy, ally].
        allies = jnp.arange(n_a)
        can = self.can_target(state, enemies[:, None], allies[None, :])
        dist = jnp.linalg.norm(pos[enemies][:, None] - pos[allies][None, :], axis=-1)
        closest = jnp.argmin(jnp.where(can, dist, jnp.inf), axis=-1)
        keep = (last_target >= 0) & can[jnp.arange(len(enemies)), jnp.clip(last_target, 0, n_a - 1)]
        attack_target = jnp.where(keep, last_target, closest)
        can_attack = jnp.any(can, axis=-1)
        attack_action = N_MOVES + (n_a - 1 - attack_target)
        # Heals: [enemy, enemy]; the lowest health fraction among injured, healable teammates.
        can_heal = self.can_target(state, enemies[:, None], enemies[None, :])
        fraction = state.unit_health / self.unit_stat(state, "health")
        injured = can_heal & (fraction[enemies][None, :] < 1.0)
        heal_target = jnp.argmin(jnp.where(injured, fraction[enemies][None, :], jnp.inf), axis=-1)
        heal_action = N_MOVES + heal_target
        # Movement: the closest ally in sight (attackers) or fighting teammate (medivacs), else the goal.
        sight = self.unit_stat(state, "sight")[enemies]
        attackable = state.unit_alive[allies][None, :] & (
            ~self.unit_stat(state, "flying")[allies][None, :]
            | self.unit_stat(state, "hits_air")[enemies][:, None]
        )
        seen = attackable & (dist < sight[:, None])
        chase = jnp.argmin(jnp.where(seen, dist, jnp.inf), axis=-1)
        fighting = state.unit_alive[enemies] & ~heals
        mate_dist = jnp.linalg.norm(pos[enemies][:, None] - pos[enemies][None, :], axis=-1)
        mate = jnp.argmin(jnp.where(fighting[None, :], mate_dist, jnp.inf), axis=-1)
        point = jnp.where(
            heals[:, None],
            jnp.where(jnp.any(fighting)[None, None], pos[enemies][mate], goals),
            jnp.where(jnp.any(seen, axis=-1)[:, None], pos[allies][chase], goals),
        )
        move = self.heading(state, enemies, point)
        arrived = jnp.linalg.norm(point - pos[enemies], axis=-1) < jnp.where(heals, 2.0, 0.5)
        move = jnp.where(arrived, STOP, move)
        acts = jnp.where(heals, jnp.any(injured, axis=-1), can_attack)
        actions = jnp.where(acts, jnp.where(heals, heal_action, attack_action), move)
        last_target = jnp.where(~heals & can_attack, attack_target, -1)
        navigating = ~acts & ~arrived & state.unit_alive[enemies]
        return actions.astype(jnp.int32), last_target.astype(jnp.int32), point, navigating

    def enemy_goals(self, state) -> jax.Array:
        """[n_enemies, 2]: the map's goal, or each enemy's start reflected through the centre."""
        start = state.unit_positions[self.num_allies :]
        if self.spec_map.enemy_goal is not None:
            return jnp.broadcast_to(jnp.asarray(self.spec_map.enemy_goal, jnp.float32), start.shape)
        centre = jnp.array([self.map_width / 2, self.map_height / 2], jnp.float32)
        return 2 * centre - start


@struct.dataclass
class WorldEnvState:
    state: object  # jaxmarl's SMAX State (unit arrays), as in jaxmarl's EnemySMAX wrapper
    last_target: jax.Array  # int32 [n_enemies]: the scripted enemy's current target, or -1
    goals: jax.Array  # float32 [n_enemies, 2]: where each enemy heads when it sees no one


class SmaxWorldEnv:
    """`smax_<map>` for the maps of `smax_maps.MAPS`, against the scripted enemy.

    kwargs: max_steps, reward_scale (x10, SMAC's scale), see_enemy_actions,
    won_battle_bonus, terrain (False: the same map on the open arena, for comparisons),
    damage_bonuses (None: the map's `MapSpec.damage_bonuses`; False: SMAX's no-bonus rule)."""

    def __init__(
        self,
        map_name: str | MapSpec,
        max_steps: int | None = None,
        reward_scale: float = 10.0,
        see_enemy_actions: bool = True,
        won_battle_bonus: float = 1.0,
        terrain: bool = True,
        damage_bonuses: bool | None = None,
    ):
        spec = map_name if isinstance(map_name, MapSpec) else MAPS[map_name]  # a MapSpec: a custom map
        max_steps = spec.max_steps if max_steps is None else int(max_steps)
        self.map_name = spec.name
        self.reward_scale = float(reward_scale)
        self.world = SmaxWorld(
            spec,
            max_steps,
            terrain,
            damage_bonuses,
            see_enemy_actions=see_enemy_actions,
            won_battle_bonus=won_battle_bonus,
        )
        self.type_names = spec.type_names
        self.terrain = self.world.grid_np if self.world.has_terrain else None
        w = self.world
        self.spec = EnvSpec(
            name=f"smax_{spec.name}",
            n_agents=w.num_allies,
            obs_dim=w.obs_size,
            state_dim=w.num_agents * len(w.own_features),
            n_actions=w.num_enemies + N_MOVES,
            episode_limit=max_steps,
            info_keys=("won",),
            extras=(("ally_visibility", (w.num_allies, w.num_allies), "bool"),),
        )

    def _timestep(self, s, obs, **kwargs):
        w, n = self.world, self.spec.n_agents
        return make_timestep(
            self.spec,
            obs=jnp.stack([obs[a] for a in w.agents[:n]]),
            state=normalised_state(obs["world_state"], w),
            avail=w.ally_avail(s),
            extras={
                "ally_visibility": ally_visibility(s.unit_positions, s.unit_alive, w.unit_stat(s, "sight"), n)
            },
            **kwargs,
        )

    def reset(self, key: jax.Array):
        obs, s = self.world.reset(key)
        env_state = WorldEnvState(
            s, jnp.full((self.world.num_enemies,), -1, jnp.int32), self.world.enemy_goals(s)
        )
        return env_state, self._timestep(s, obs)

    def step(self, key: jax.Array, env_state: WorldEnvState, actions: jax.Array):
        w = self.world
        enemy, last_target, points, navigating = w.enemy_actions(
            env_state.state, env_state.last_target, env_state.goals
        )
        moves, attacks = w._decode_discrete_actions(jnp.concatenate([actions.astype(jnp.int32), enemy]))
        n = self.spec.n_agents
        points = jnp.concatenate([jnp.zeros((n, 2)), points])
        navigating = jnp.concatenate([jnp.zeros((n,), bool), navigating])
        obs, s, rewards, _, _ = w.step_env_no_decode(
            key, env_state.state, (moves, attacks, points, navigating)
        )
        lost = w.team_lost(s)
        terminated = lost[0] | lost[1]
        ts = self._timestep(
            s,
            obs,
            reward=rewards[w.agents[0]] * self.reward_scale,
            terminated=terminated,
            truncated=(s.step >= self.spec.episode_limit) & ~terminated,
            info={"won": lost[1] & ~lost[0]},
        )
        return env_state.replace(state=s, last_target=last_target), ts
