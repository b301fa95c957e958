"""The catalogue of SMAX maps that run on our world rules (`smax_world.SmaxWorldEnv`).

Import-light (numpy only), so that registering and listing names stays cheap. Unit
lists follow SMAC's map definitions (smac/env/starcraft2/maps/smac_maps.py); episode
limits are in SMAX env steps (0.5 s of game time each; SMAC's steps are 8 game frames,
0.36 s at 22.4 frames per second).
"""

from __future__ import annotations

import dataclasses

from jlmarl.envs import smax_terrain

# SMACv2's race pools and weights (seed 001, MMSA, Table 7; SMACv2's own configs).
RACE_POOLS = {
    "protoss": (("stalker", "zealot", "colossus"), (0.45, 0.45, 0.1)),
    "terran": (("marine", "marauder", "medivac"), (0.45, 0.45, 0.1)),
    "zerg": (("zergling", "hydralisk", "baneling"), (0.45, 0.45, 0.1)),
}
RACE_SIZES = ((5, 5), (10, 10), (10, 11), (20, 20), (20, 23))


@dataclasses.dataclass(frozen=True)
class MapSpec:
    name: str
    allies: tuple[str, ...]  # unit type names; for race maps, placeholders of the right count
    enemies: tuple[str, ...]
    max_steps: int
    terrain: str = "open"  # "open", "corridor", "plateau" (smax_terrain's grids)
    # Start positions: "smax" (SMAX's: allies around (w/4, h/2), enemies around (3w/4, h/2),
    # +-2 noise), "boxes" (uniform in ally_box / enemy_box), "surround_reflect" (SMACv2's).
    starts: str = "smax"
    ally_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x0, x1, y0, y1
    enemy_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    # Where the scripted enemy heads when it sees no target: None = its start reflected
    # through the map centre (jaxmarl's heuristic), else this point.
    enemy_goal: tuple[float, float] | None = None
    race: str | None = None  # unit types drawn per episode from RACE_POOLS[race]
    # SC2's damage bonuses (smax_units: "+19 vs light" etc., one rule for every unit). On for
    # every map here; jaxmarl's maps (smax_3m, ...) run on jaxmarl's engine without them,
    # unchanged, so that earlier results and checkpoints on them stay valid. False: SMAX's
    # no-bonus rule on a world map (e.g. to compare with it).
    damage_bonuses: bool = True

    @property
    def type_names(self) -> tuple[str, ...]:
        """The map's unit types, one observation bit each: the race pool, or the types present
        on the map in order of first appearance (SMAC's per-map unit-type bits)."""
        if self.race is not None:
            return RACE_POOLS[self.race][0]
        return tuple(dict.fromkeys(self.allies + self.enemies))

    def grid(self):
        return {
            "open": lambda: smax_terrain.open_grid(32, 32),
            "corridor": smax_terrain.corridor_grid,
            "plateau": smax_terrain.plateau_grid,
        }[self.terrain]()


def _units(*groups: tuple[str, int]) -> tuple[str, ...]:
    return tuple(name for name, count in groups for _ in range(count))


_MMM = _units(("medivac", 1), ("marauder", 2), ("marine", 7))
MAPS: dict[str, MapSpec] = {
    # SMAC: 6 zealots vs 24 zerglings through a narrow passage (smax_terrain.corridor_grid).
    "corridor": MapSpec(
        "corridor",
        _units(("zealot", 6)),
        _units(("zergling", 24)),
        max_steps=200,
        terrain="corridor",
        starts="boxes",
        ally_box=(6.0, 11.0, 12.0, 20.0),
        enemy_box=(22.0, 29.0, 6.0, 26.0),
        enemy_goal=(6.5, 16.0),
    ),
    "MMM": MapSpec("MMM", _MMM, _MMM, max_steps=150),
    "MMM2": MapSpec("MMM2", _MMM, _units(("medivac", 1), ("marauder", 3), ("marine", 8)), max_steps=180),
    "1c3s5z": MapSpec(
        "1c3s5z",
        _units(("colossus", 1), ("stalker", 3), ("zealot", 5)),
        _units(("colossus", 1), ("stalker", 3), ("zealot", 5)),
        max_steps=180,
    ),
    # 2 colossi on a plateau; 64 zerglings below reach it only by its ramp (plateau_grid).
    "2c_vs_64zg": MapSpec(
        "2c_vs_64zg",
        _units(("colossus", 2)),
        _units(("zergling", 64)),
        max_steps=200,
        terrain="plateau",
        starts="boxes",
        ally_box=(7.0, 11.0, 14.0, 18.0),
        enemy_box=(21.0, 30.0, 2.0, 30.0),
        enemy_goal=(9.0, 16.0),
    ),
    "bane_vs_bane": MapSpec(
        "bane_vs_bane",
        _units(("zergling", 20), ("baneling", 4)),
        _units(("zergling", 20), ("baneling", 4)),
        max_steps=200,
    ),
    "so_many_baneling": MapSpec(
        "so_many_baneling", _units(("zealot", 7)), _units(("baneling", 32)), max_steps=100
    ),
}
for _race in RACE_POOLS:
    for _n, _m in RACE_SIZES:
        _name = f"{_race}_{_n}v{_m}"
        MAPS[_name] = MapSpec(
            _name,
            ("?",) * _n,
            ("?",) * _m,
            max_steps=100,
            starts="surround_reflect",
            race=_race,
        )
