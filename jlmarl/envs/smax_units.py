"""Unit statistics for SMAX maps: SMAX's six types plus the medivac, colossus and baneling.

Statistics convention (SMAX's, kept for the new units, not a mix):
- `health` = SC2 hit points + shields (shields fold into health; no shield regeneration);
- no armour, no damage bonuses (e.g. +5 vs light), no upgrades;
- `damage` = the weapon's base damage per attack, ignoring multi-hit weapons (SMAX's
  zealot deals 8 per attack although SC2's hits twice for 8);
- times and speeds at SC2's "faster" game speed (liquipedia's figures; normal-speed
  cooldowns / 1.4), map units per second;
- melee weapons get SMAX's melee range 2 (centre-to-centre distance; SC2's melee
  range is 0.1 from the unit's edge).
The six SMAX rows are jaxmarl's `SMAX.__init__` defaults, verbatim, so that maps made of
those units behave as jaxmarl's (SMAX's marine damage 9 and marauder speed 2.25 are
SMAX's own figures; SC2 4.10 has 6 and 3.15). The new rows come from SC2 4.10
(Legacy of the Void, patch 4.10, the client SMAC runs), as listed on liquipedia's unit
pages for that patch:
- medivac: 150 HP, armour 1 (dropped), speed 3.5, sight 11, radius 0.75, heals 12.6 HP
  per second at range 4 (3 HP per energy; SMAX has no energy, so heals never run out);
  flying; heals biological ground units (every ground unit on our maps' terran side).
- colossus: 200 HP + 150 shields = 350, damage 10 (+5 light) x2 per attack -> 10,
  cooldown 1.5 / 1.4 = 1.07 s, range 7 (9 with Extended Thermal Lance, which SMAC's maps
  do not research), speed 3.15, sight 10, radius 1.0; hits ground only; walks cliffs.
  Its thermal lances sweep a line across the target: we damage every enemy ground unit
  within `splash` (0.5) of a segment of length 2 * `line_half_length` (1.4) through the
  target, perpendicular to the attack direction.
- baneling: 30 HP, damage 16 (+19 light) -> 16, splash radius 2.2 around the baneling,
  speed 3.5, sight 8, radius 0.375; melee (range 2 by SMAX's convention); dies when it
  attacks; hits ground only; no friendly fire (SC2 banelings spare their own side).
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Splash kinds.
SINGLE, LINE, RADIUS = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class UnitType:
    name: str
    glyph: str  # one letter for renders, SMAX's shorthands where SMAX has the unit
    health: float
    damage: float  # per attack; 0 for the medivac
    attack_range: float  # for the medivac: its heal range
    cooldown: float  # seconds between attacks
    speed: float
    sight: float
    radius: float
    flying: bool = False
    hits_air: bool = True
    melee: bool = False  # melee units cannot attack across a cliff
    heal_rate: float = 0.0  # HP per second to one ally in range (medivac)
    splash: int = SINGLE
    splash_size: float = 0.0  # LINE: half-width of the lance; RADIUS: blast radius
    line_half_length: float = 0.0
    suicide: bool = False  # dies when it attacks (baneling)
    walks_cliffs: bool = False  # colossus


UNITS: dict[str, UnitType] = {
    # SMAX's six (jaxmarl SMAX.__init__ defaults).
    "marine": UnitType("marine", "m", 45.0, 9.0, 5.0, 0.61, 3.15, 9.0, 0.375),
    "marauder": UnitType("marauder", "M", 125.0, 10.0, 6.0, 1.07, 2.25, 10.0, 0.5625, hits_air=False),
    "stalker": UnitType("stalker", "s", 160.0, 13.0, 6.0, 1.87, 4.13, 10.0, 0.625),
    "zealot": UnitType("zealot", "Z", 150.0, 8.0, 2.0, 0.86, 3.15, 9.0, 0.5, hits_air=False, melee=True),
    "zergling": UnitType("zergling", "z", 35.0, 5.0, 2.0, 0.5, 4.13, 8.0, 0.375, hits_air=False, melee=True),
    "hydralisk": UnitType("hydralisk", "h", 80.0, 12.0, 5.0, 0.59, 3.15, 9.0, 0.625),
    # SC2 4.10 (see the module docstring). The medivac's `cooldown` only scales its
    # (always zero) cooldown feature in observations: heals are continuous.
    "medivac": UnitType(
        "medivac", "V", 150.0, 0.0, 4.0, 1.0, 3.5, 11.0, 0.75, flying=True, hits_air=False, heal_rate=12.6
    ),
    "colossus": UnitType(
        "colossus",
        "C",
        350.0,
        10.0,
        7.0,
        1.07,
        3.15,
        10.0,
        1.0,
        hits_air=False,
        splash=LINE,
        splash_size=0.5,
        line_half_length=1.4,
        walks_cliffs=True,
    ),
    "baneling": UnitType(
        "baneling",
        "b",
        30.0,
        16.0,
        2.0,
        0.5,
        3.5,
        8.0,
        0.375,
        hits_air=False,
        melee=True,
        splash=RADIUS,
        splash_size=2.2,
        suicide=True,
    ),
}
# SMAX's own unit indices (jaxmarl's tables are in this order).
SMAX_TYPES = ("marine", "marauder", "stalker", "zealot", "zergling", "hydralisk")


def unit_table(names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-type arrays over `names` (the map's types, in the order of its type bits)."""
    rows = [UNITS[n] for n in names]
    return {
        field.name: np.array([getattr(r, field.name) for r in rows])
        for field in dataclasses.fields(UnitType)
        if field.name not in ("name", "glyph")
    }
