"""SMAX maps on hand-built scenes: each test places units by hand and checks one rule
with numbers worked out by hand (distances, damage, heal amounts), not by the env."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import jlmarl.envs as envs
from jlmarl.envs import smax_terrain
from jlmarl.envs.smax_maps import MapSpec
from jlmarl.envs.smax_units import UNITS, damage_table
from jlmarl.envs.smax_world import SmaxWorldEnv, draw_race_types

STOP = 4  # SMAX's stop action
# Each scene program runs once, for a few dozen steps: XLA's slow optimisations don't pay.
FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}


def _place(env_state, positions, alive):
    """env_state with units moved to `positions` [n_units, 2]; dead units get 0 health."""
    s = env_state.state
    alive = jnp.asarray(alive)
    return env_state.replace(
        state=s.replace(
            unit_positions=jnp.asarray(positions, jnp.float32),
            unit_alive=alive,
            unit_health=jnp.where(alive, s.unit_health, 0.0),
        )
    )


def test_ally_visibility_is_each_allys_sight_and_matches_its_obs():
    # smax_2s3z: allies 0-1 stalkers (sight 10), 2-4 zealots (sight 9); enemies 5-9.
    env = envs.make("smax_2s3z")
    env_state, ts0 = env.reset(jax.random.key(0))
    assert ts0.extras["ally_visibility"].shape == (5, 5) and ts0.extras["ally_visibility"].dtype == bool
    positions = [
        (10.0, 16.0),  # 0 stalker
        (12.0, 16.0),  # 1 stalker: 2 from ally 0
        (19.5, 16.0),  # 2 zealot: 9.5 from ally 0 (< 10, > 9: 0 sees 2, 2 does not see 0), 7.5 from 1
        (11.0, 17.0),  # 3 zealot, dead
        (10.0, 28.0),  # 4 zealot: 12 from 0, sqrt(4 + 144) = 12.2 from 1, sqrt(90.25 + 144) = 15.3 from 2
    ] + [(28.0, 2.0 + 2.0 * k) for k in range(5)]  # enemies far from every ally
    alive = [True, True, True, False, True] + [True] * 5
    env_state = _place(env_state, positions, alive)
    _, run = _runner("smax_2s3z", 1)
    ts = jax.tree.map(lambda x: x[0], run(env_state, jnp.full((1, 5), STOP, jnp.int32))["ts"])
    expected = np.array(
        [  # row i sees column j
            [1, 1, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [0, 1, 1, 0, 0],  # the zealot sees the stalker 7.5 away, not the one 9.5 away
            [0, 0, 0, 0, 0],  # dead: sees nothing, not even itself
            [0, 0, 0, 0, 1],
        ],
        bool,
    )
    np.testing.assert_array_equal(np.asarray(ts.extras["ally_visibility"]), expected)
    # The same pairs show in the obs: ally i's block for ally j (slot j, or j - 1 after i)
    # is non-zero exactly when i sees j.
    features = 13  # SMAX's per-unit features: health, dx, dy, move x/y, attack, cooldown, 6 type bits
    obs = np.asarray(ts.obs)
    for i in range(5):
        for j in range(5):
            if i != j:
                slot = j if j < i else j - 1
                shown = np.any(obs[i, slot * features : (slot + 1) * features] != 0)
                assert shown == expected[i, j], (i, j)


# --- scenes on the maps with our world rules ---------------------------------------------------


@functools.cache
def _runner(name: str | MapSpec, steps: int, **kwargs):
    """(env, jitted run(env_state, actions [steps, n_agents]) -> per-step unit arrays and Timesteps)."""
    env = SmaxWorldEnv(name, **kwargs) if isinstance(name, MapSpec) else envs.make(name, **kwargs)

    def run(env_state, actions):
        def body(env_state, xs):
            t, a = xs
            env_state, ts = env.step(jax.random.fold_in(jax.random.key(7), t), env_state, a)
            s = env_state.state
            return env_state, dict(pos=s.unit_positions, health=s.unit_health, alive=s.unit_alive, ts=ts)

        return jax.lax.scan(body, env_state, (jnp.arange(steps), actions))[1]

    compiled = []

    def run_compiled(env_state, actions):  # compiled once, on the first scene's shapes
        if not compiled:
            lowered = jax.jit(run).lower(env_state, actions)
            compiled.append(lowered.compile(compiler_options=FAST_COMPILE))
        return compiled[0](env_state, actions)

    return env, run_compiled


def _scene(env, units: dict[int, tuple[float, float]], health=None, cooldown=None):
    """A reset env_state with only `units` (index -> position) alive; others dead.
    health / cooldown: index -> value overrides."""
    env_state, _ = env.reset(jax.random.key(0))
    s = env_state.state
    n = s.unit_alive.shape[0]
    alive = np.zeros(n, bool)
    alive[list(units)] = True
    pos = np.asarray(s.unit_positions).copy()
    for i, p in units.items():
        if p is not None:  # None: keep the reset's position
            pos[i] = p
    hp = np.where(alive, np.asarray(s.unit_health), 0.0)
    cd = np.zeros(n, np.float32)
    for i, v in (health or {}).items():
        hp[i] = v
    for i, v in (cooldown or {}).items():
        cd[i] = v
    s = s.replace(
        unit_positions=jnp.asarray(pos, jnp.float32),
        unit_alive=jnp.asarray(alive),
        unit_health=jnp.asarray(hp, jnp.float32),
        unit_weapon_cooldowns=jnp.asarray(cd),
    )
    return env_state.replace(state=s)


def _actions(env, steps: int, per_agent: dict[int, int] | None = None):
    """[steps, n_agents]: stop, except `per_agent` (index -> action) every step."""
    a = np.full((steps, env.spec.n_agents), STOP, np.int32)
    for i, v in (per_agent or {}).items():
        a[:, i] = v
    return jnp.asarray(a)


CORRIDOR_STEPS = 40


def test_a_unit_walking_into_a_wall_stops_at_it():
    # Corridor: the allies' chamber ends at x = 12 for y outside the passage (15..17).
    # Zealot 0 at (10.5, 12) walks east (action 1) at 3.15 x 1/16 = 0.197 per world step:
    # its last step that stays in the chamber ends in (12 - 0.197, 12), and y never changes.
    env, run = _runner("smax_corridor", CORRIDOR_STEPS)
    out = run(_scene(env, {0: (10.5, 12.0), 6: (28.0, 26.0)}), _actions(env, CORRIDOR_STEPS, {0: 1}))
    x, y = np.asarray(out["pos"][:, 0, 0]), np.asarray(out["pos"][:, 0, 1])
    assert 12.0 - 0.2 < x[-1] < 12.0
    assert np.all(x < 12.0) and np.all(y == 12.0)


def test_the_enemy_reaches_a_target_behind_a_wall_by_the_path():
    # A zergling in the east chamber, a zealot in the west one: the straight line between
    # them crosses walls; walking it, the zergling would stop at the chamber's west wall.
    # By the path (29 cells through the passage at 2.07 per step) it reaches and hits the zealot.
    env, run = _runner("smax_corridor", CORRIDOR_STEPS)
    out = run(_scene(env, {0: (6.0, 12.0), 6: (25.0, 6.0)}), _actions(env, CORRIDOR_STEPS))
    pos = np.asarray(out["pos"][:, 6])
    cells = env.terrain[np.floor(pos[:, 0]).astype(int), np.floor(pos[:, 1]).astype(int)]
    assert np.all(cells != 1)  # never inside a wall
    assert np.any((pos[:, 0] > 12) & (pos[:, 0] < 20))  # went through the passage
    assert float(out["health"][-1, 0]) < 150.0  # and reached the zealot


def test_corridor_choke_limits_how_many_zerglings_reach_a_zealot():
    # Two zealots abreast close the 2-wide passage at x = 14 (y 15.5 and 16.5); 24 zerglings
    # charge. A zergling in range of zealot 0 (centre distance < 2) must stand in the strip
    # ahead: x in (14, 16), y in [15, 17). Units do not walk into one another, so zergling
    # centres stay >= 0.75 apart and >= 0.875 from the zealots: at most two files of 2 and 3
    # (x ~ 14.9 and ~ 15.6) fit, k = 5. On the open map the same zealots are surrounded.
    k = 5
    counts, health = {}, {}
    for terrain in (True, False):
        env, run = _runner("smax_corridor", CORRIDOR_STEPS, terrain=terrain)
        env_state = _scene(env, {0: (14.0, 15.5), 1: (14.0, 16.5), **{i: None for i in range(6, 30)}})
        out = run(env_state, _actions(env, CORRIDOR_STEPS))
        zealot = np.asarray(out["pos"][:, 0])
        dist = np.linalg.norm(np.asarray(out["pos"][:, 6:]) - zealot[:, None], axis=-1)
        in_range = (dist < 2.0) & np.asarray(out["alive"][:, 6:]) & np.asarray(out["alive"][:, :1])
        counts[terrain] = in_range.sum(1)
        health[terrain] = np.asarray(out["health"][:, :2]).sum(1)
    assert counts[True].max() <= k
    assert counts[False].max() > counts[True].max()  # more reach them in the open...
    assert health[True][15] > health[False][15] + 100  # ...and the pair loses far more health


def test_movement_rule_walls_cliffs_ramps_colossus_and_air():
    grid = jnp.asarray(smax_terrain.plateau_grid())  # HIGH x 4..14, y 9..23; RAMP x 14..16, y 15..17
    old = jnp.array(
        [
            [3.9, 12.0],  # zergling on LOW stepping east onto HIGH: blocked
            [3.9, 12.0],  # colossus, same step: walks the cliff
            [16.1, 15.5],  # zergling on LOW stepping west onto the RAMP: allowed
            [14.1, 15.5],  # zergling on the RAMP stepping west onto HIGH: allowed
            [1.1, 12.0],  # zergling stepping west into the edge WALL (x < 1): blocked
            [0.5, 12.0],  # medivac over the WALL, flying west: allowed
            [3.9, 8.9],  # zergling stepping diagonally: x (still LOW) allowed, then y onto HIGH blocked
        ]
    )
    step = jnp.array([[0.2, 0], [0.2, 0], [-0.2, 0], [-0.2, 0], [-0.2, 0], [-0.2, 0], [0.2, 0.2]])
    flying = jnp.array([False, False, False, False, False, True, False])
    cliffs = jnp.array([False, True, False, False, False, False, False])
    new = np.asarray(smax_terrain.move(grid, old, old + step, flying, cliffs))
    expected = np.array(
        [[3.9, 12.0], [4.1, 12.0], [15.9, 15.5], [13.9, 15.5], [1.1, 12.0], [0.3, 12.0], [4.1, 8.9]]
    )
    np.testing.assert_allclose(new, expected, atol=1e-6)


# One custom map holds every unit the scenes below need, on 2c_vs_64zg's plateau terrain
# (HIGH x 4..14, y 9..23, RAMP x 14..16, y 15..17, LOW elsewhere inside a WALL ring), so
# that one compiled program plays them all; each scene leaves only its own units alive.
SCENE_MAP = MapSpec(
    "unit_scenes",
    allies=("medivac", "marine", "colossus", "baneling", "zergling", "zealot"),  # units 0-5
    enemies=("zealot",) * 4 + ("zergling",) * 5 + ("marine", "stalker"),  # 6-9, 10-14, 15, 16
    max_steps=100,
    terrain="plateau",
)
SCENE_STEPS = 40


@functools.cache
def _scene_runner():
    return _runner(SCENE_MAP, SCENE_STEPS)


def test_a_zergling_reaches_a_colossus_on_high_ground_only_by_the_ramp():
    # Colossus 2 on the plateau 1.5 from its west cliff; zergling 10 below the cliff, 1.9
    # away: in melee range (2) but across the cliff, so it cannot attack; it runs around
    # the plateau (~36 cells, 2.07 per step) and up the east ramp (x 14..16).
    env, run = _scene_runner()
    out = run(_scene(env, {2: (5.5, 16.0), 10: (3.6, 16.0)}), _actions(env, SCENE_STEPS))
    pos = np.asarray(out["pos"][:, 10])
    code = env.terrain[np.floor(pos[:, 0]).astype(int), np.floor(pos[:, 1]).astype(int)]
    up = np.flatnonzero(code != smax_terrain.LOW)
    assert len(up) > 0, "the zergling never got onto the plateau"
    assert pos[up[0], 0] >= 13.0  # first off LOW at the ramp, on the plateau's east side
    health = np.asarray(out["health"][:, 2])
    assert np.all(health[: up[0]] == 350.0)  # untouched while the zergling was below
    assert health[-1] < 350.0  # reached it by the ramp


def test_a_medivac_heals_an_injured_ally_and_cannot_attack():
    # Medivac 0 next to marine 1 (20 of 45 HP); an enemy marine 2.5 away (holding fire).
    # Heal: 12.6 HP/s x 0.5 s per env step = 6.3 HP. A medivac's slot k is ally k (SMAC).
    env, run = _scene_runner()
    env_state = _scene(
        env, {0: (24.0, 28.0), 1: (25.0, 28.0), 15: (24.0, 30.5)}, health={1: 20.0}, cooldown={15: 100.0}
    )
    heal_1, slot_9 = 5 + 1, 5 + 9  # slot 9: the enemy marine (unit 15) for a marine; no ally 9
    actions = _actions(env, SCENE_STEPS).at[0, 0].set(heal_1).at[1, 0].set(slot_9)
    out = run(env_state, actions)
    np.testing.assert_allclose(np.asarray(out["health"][:2, 1]), [26.3, 26.3], atol=1e-4)
    assert np.all(np.asarray(out["health"][:, 15]) == 45.0)  # the enemy marine: never hit
    avail = np.asarray(out["ts"].avail[0, 0])  # the medivac, after step 1
    assert avail[:5].all()  # moves and stop
    assert np.flatnonzero(avail[5:]).tolist() == [1]  # only the injured, living ground ally in range
    # ...not itself, not the dead allies, no enemy: slots 6-10 (no such ally) are off.


def test_a_baneling_explosion_damages_every_enemy_in_its_radius_and_removes_it():
    # Baneling 3 at (22, 6) attacks zergling 10 (slot 4, 0.9 away: in its range 1.0): every
    # enemy ground unit whose body is within 2.2 of it takes 16, +19 if light (SC2's
    # Volatile Burst): zerglings 35 -> 0, the zealot 150 -> 115; the armoured stalker
    # 160 -> 144. None beyond, none to its own side; it dies.
    env, run = _scene_runner()
    units = {
        3: (22.0, 6.0),
        10: (22.9, 6.0),  # zergling, distance 0.9
        6: (22.0, 7.5),  # zealot, 1.5
        16: (20.0, 6.0),  # stalker (radius 0.625), 2.0
        11: (22.0, 3.5),  # zergling (radius 0.375), 2.5: its edge 2.125 away, inside
        14: (24.7, 6.0),  # zergling, 2.7: its edge 2.325 away, outside
        4: (21.0, 7.2),  # own zergling, 1.56
    }
    no_fire = {i: 100.0 for i in units if i != 3}  # only the baneling acts
    out = run(_scene(env, units, cooldown=no_fire), _actions(env, SCENE_STEPS).at[0, 3].set(5 + 4))
    health, alive = np.asarray(out["health"][0]), np.asarray(out["alive"][0])
    np.testing.assert_allclose(health[[10, 11, 6, 16]], [0.0, 0.0, 115.0, 144.0])
    assert not alive[10] and not alive[11] and alive[6] and alive[16]
    assert health[14] == 35.0 and health[4] == 35.0
    assert health[3] == 0.0 and not alive[3]
    # Reward: the enemies' health fractions lost (1 + 1 + 35/150 + 16/160) / 11 enemies, x10.
    np.testing.assert_allclose(float(out["ts"].reward[0]), 10 * (2 + 35 / 150 + 16 / 160) / 11, rtol=1e-5)


def test_a_killed_baneling_bursts_too():
    # Baneling 3 (5 of 30 HP) holds still; the enemy marine 15, 3.0 away, shoots it (6
    # damage). Killed, it bursts as if it had attacked (SC2): the zergling 1.0 away
    # 35 -> 0, the zealot 1.5 away 150 -> 115, the armoured stalker 2.0 away 160 -> 144;
    # the marine is outside the 2.2 radius. The others hold fire (cooldowns).
    env, run = _scene_runner()
    units = {3: (22.0, 6.0), 10: (23.0, 6.0), 6: (22.0, 7.5), 16: (20.0, 6.0), 15: (22.0, 9.0)}
    hold = {i: 100.0 for i in (3, 10, 6, 16)}
    out = run(_scene(env, units, health={3: 5.0}, cooldown=hold), _actions(env, SCENE_STEPS))
    health, alive = np.asarray(out["health"][0]), np.asarray(out["alive"][0])
    assert not alive[3]
    np.testing.assert_allclose(health[[10, 6, 16, 15]], [0.0, 115.0, 144.0, 45.0])


def test_a_colossus_damages_the_enemies_along_its_line():
    # Colossus 2 at (18, 6) attacks zealot 6 at (24, 6) (slot 0, range 7): the lance is the
    # segment x = 24, y 4.6..7.4 (half-length 1.4, perpendicular to the shot); enemy ground
    # units within 0.5 of it lose 10 + 5 (zealots are light: the lance's +5 vs light).
    env, run = _scene_runner()
    units = {
        2: (18.0, 6.0),
        6: (24.0, 6.0),  # the target
        7: (24.0, 7.2),  # on the segment: hit
        8: (25.1, 6.0),  # behind the target, 1.1 from the segment: missed
        9: (24.0, 8.4),  # past the segment's end (7.4) by 1.0: missed
        5: (24.3, 4.8),  # own zealot 0.3 from the segment: no friendly fire
    }
    no_fire = {i: 100.0 for i in units if i != 2}
    out = run(_scene(env, units, cooldown=no_fire), _actions(env, SCENE_STEPS).at[0, 2].set(5 + 0))
    health = np.asarray(out["health"][0])
    np.testing.assert_array_equal(health[[6, 7, 8, 9, 5]], [135.0, 135.0, 150.0, 150.0, 150.0])


def test_damage_bonuses_one_rule_for_every_unit():
    # SC2 4.10's bonuses by hand: base + bonus when the target has the bonus attribute.
    names = tuple(UNITS)
    table = damage_table(names)
    d = {(a, t): float(table[names.index(a), names.index(t)]) for a in names for t in names}
    assert (
        d["baneling", "zealot"] == 16 + 19
        and d["baneling", "zergling"] == 35
        and d["baneling", "marine"] == 35
    )
    assert d["baneling", "stalker"] == 16 and d["baneling", "baneling"] == 16  # armored; biological only
    assert (
        d["marauder", "stalker"] == 10 + 10
        and d["marauder", "medivac"] == 20
        and d["marauder", "marine"] == 10
    )
    assert (
        d["stalker", "stalker"] == 13 + 5 and d["stalker", "colossus"] == 18 and d["stalker", "zealot"] == 13
    )
    assert d["colossus", "zergling"] == 10 + 5 and d["colossus", "stalker"] == 10
    for unit in ("marine", "zealot", "zergling", "hydralisk"):  # no bonus in SC2
        assert {d[unit, t] for t in names} == {UNITS[unit].damage}
    # Off: every attacker's base damage against every target.
    assert (damage_table(names, bonuses=False) == np.array([UNITS[n].damage for n in names])[:, None]).all()


def test_jaxmarls_maps_keep_smax_damage_without_bonuses():
    # smax_2s3z stays on jaxmarl's engine: stalker 0 at (10, 16) shoots enemy stalker 5 at
    # (15, 16) (slot 0, range 6, one shot per 0.5 s step at its 1.87 s cooldown): 160 - 13 = 147,
    # not the 18 of our world maps' +5 vs armored. Enemy 5 shoots back the same.
    env, run = _runner("smax_2s3z", 1)
    out = run(_scene(env, {0: (10.0, 16.0), 5: (15.0, 16.0)}), _actions(env, 1, {0: 5}))
    np.testing.assert_array_equal(np.asarray(out["health"][0, [0, 5]]), [147.0, 147.0])


def test_only_medivacs_left_is_a_loss():
    # The allies' medivac alive, every other ally dead, an enemy alive: terminated, not won.
    env, run = _scene_runner()
    out = run(_scene(env, {0: (24.0, 28.0), 15: (28.0, 4.0)}), _actions(env, SCENE_STEPS))
    assert bool(out["ts"].terminated[0]) and float(out["ts"].info["won"][0]) == 0.0


# --- SMACv2 race pools -------------------------------------------------------------------------


def test_race_types_follow_the_pool_weights_and_enemy_extras_are_drawn_too():
    weights = jnp.array([0.45, 0.45, 0.1])
    n_draws = 20000
    keys = jax.random.split(jax.random.key(3), n_draws)
    types = np.asarray(jax.jit(jax.vmap(lambda k: draw_race_types(k, weights, 10, 11)))(keys))
    allies, enemies = types[:, :10], types[:, 10:]
    np.testing.assert_array_equal(enemies[:, :10], allies)  # enemies mirror the allies
    # Frequencies within 5 standard errors of the weights (se <= 0.0035 for 20000 draws).
    for group in (allies.ravel(), enemies[:, 10]):
        freq = np.bincount(group, minlength=3) / len(group)
        np.testing.assert_allclose(freq, [0.45, 0.45, 0.1], atol=5 * np.sqrt(0.25 / n_draws))
    # The extra enemy is not a copy of an ally (jaxmarl's bug made it always type 0).
    assert np.mean(enemies[:, 10] == allies[:, 0]) < 0.5
    assert set(np.unique(draw_race_types(jax.random.key(0), weights, 5, 3))) <= {0, 1, 2}


# --- render ------------------------------------------------------------------------------------


def test_gif_frames_show_terrain_units_and_attack_lines(tmp_path):
    from PIL import Image

    from jlmarl.render import HEAL_COLOUR, TEAM_COLOURS, TERRAIN_COLOURS, draw_gif

    env = envs.make("smax_corridor")  # 6 zealots, 24 zerglings; the view spans the walkable cells
    n, steps = 30, 3
    positions = np.zeros((steps, n, 2), np.float32)
    positions[:, :, 0], positions[:, :, 1] = 25.0, np.linspace(5.0, 27.0, n)  # out of the way
    positions[:, 0] = (6.0, 16.0)
    positions[:, 6] = (8.0, 16.0)
    alive = np.zeros((steps, n), bool)
    alive[:, [0, 6]] = True
    targets = np.full((steps, n), -1, np.int32)
    targets[1, 0] = 6  # the zealot attacks the zergling in frame 1
    episode = dict(
        positions=positions,
        health=np.full((steps, n), 35.0, np.float32),
        alive=alive,
        targets=targets,
        returns=np.array([0.0, 0.5, 1.0]),
        teams=(np.arange(n) >= 6).astype(np.float32),
        types=np.array([0] * 6 + [1] * 24),
    )
    gif = Image.open(draw_gif(env, episode, tmp_path / "e.gif", size=320))
    assert gif.n_frames == steps and gif.size[0] == 320
    gif.seek(1)
    frame = np.asarray(gif.convert("RGB"))
    colours = {tuple(c) for c in frame.reshape(-1, 3)}
    assert TERRAIN_COLOURS[smax_terrain.WALL] in colours
    assert TEAM_COLOURS[0] in colours and TEAM_COLOURS[1] in colours and HEAL_COLOUR not in colours
    # The attack line runs between the two units: midway, at (7, 16), in the zealot's colour.
    view_x0, view_y0, side = 0.0, 0.0, 32.0  # corridor's walkable cells span 2..30 + margins: the whole map
    scale = 320 / side
    x, y = (7.0 - view_x0) * scale, 22 + 320 - (16.0 - view_y0) * scale
    assert tuple(frame[int(round(y)), int(round(x))]) == TEAM_COLOURS[0]
