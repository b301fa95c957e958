"""Unit statistics for SMAX maps: SMAX's six types plus the medivac, colossus and baneling.

Statistics convention (one for every unit, not a mix):
- `health` = SC2 hit points + shields (shields fold into health; no shield regeneration);
- `damage` = the weapon's base damage per attack, ignoring multi-hit weapons (SMAX's
  zealot deals 8 per attack although SC2's hits twice for 8);
- damage bonuses: every unit has its SC2 attributes (light / armored / biological /
  mechanical / massive) and every weapon its SC2 bonus ("+19 vs light"), and one rule
  applies them: an attack deals `damage + bonus` to a unit with the `bonus_vs`
  attribute, else `damage` (`damage_table`); splash victims each by their own
  attributes. The six SMAX types get theirs as much as the three new ones (the marauder's
  +10 vs armored, the stalker's +5 vs armored).
- no armour and no upgrades, for every unit (SC2's armour subtracts per hit of a
  multi-hit weapon, which this convention folds into one hit);
- times and speeds at SC2's "faster" game speed (liquipedia's figures; normal-speed
  cooldowns / 1.4), map units per second;
- melee weapons get SMAX's melee range 2 (centre-to-centre distance; SC2's melee
  range is 0.1 from the unit's edge), except the baneling (below).
Where bonuses apply: on the maps of our world rules (`smax_world.py`,
`MapSpec.damage_bonuses`, on for every map of `smax_maps.MAPS`). The maps jaxmarl can
express (smax_3m, smax_2s3z, ...) run on jaxmarl's own engine, which has no bonuses, and
stay that way so that earlier results and checkpoints on them stay valid.
The six SMAX rows' base statistics are jaxmarl's `SMAX.__init__` defaults, verbatim
(SMAX's marine damage 9 and marauder speed 2.25 are SMAX's own figures; SC2 4.10 has 6 and
3.15). Attributes, bonuses and the new rows come from SC2 4.10 (Legacy of the Void, patch
4.10, the client SMAC runs), as listed on liquipedia's unit pages for that patch:
- marine: light, biological; 6 damage, no bonus.
- marauder: armored, biological; 10 (+10 vs armored).
- stalker: armored, mechanical; 13 (+5 vs armored) (LotV since patch 4.0, with the 1.87 s
  cooldown SMAX uses; 10 (+4 vs armored) before it).
- zealot: light, biological; 8 x2, no bonus.
- zergling: light, biological; 5, no bonus.
- hydralisk: light, biological; 12, no bonus.
- medivac: armored, mechanical; 150 HP, armour 1 (dropped), speed 3.5, sight 11, radius
  0.75, heals 12.6 HP per second at range 4 (3 HP per energy; SMAX has no energy, so heals
  never run out); flying; heals biological ground units (every ground unit on our maps'
  terran side).
- colossus: armored, mechanical, massive; 200 HP + 150 shields = 350, damage 10 (+5 vs
  light) x2 per attack -> 10 (+5 vs light), cooldown 1.5 / 1.4 = 1.07 s, range 7 (9 with
  Extended Thermal Lance, which SMAC's maps do not research), speed 3.15, sight 10, radius
  1.0; hits ground only; walks cliffs. Its thermal lances sweep a line across the target:
  we damage every enemy ground unit within `splash` (0.5) of a segment of length
  2 * `line_half_length` (1.4) through the target, perpendicular to the attack direction.
- baneling: biological (not light); 30 HP, damage 16 (+19 vs light; 80 vs structures,
  none on our maps), splash radius 2.2 around the baneling, speed 3.5, sight 8, radius
  0.375; dies when it attacks, and bursts when killed; hits ground only; no friendly fire
  (SC2 banelings spare their own side). Its range is the one exception to SMAX's melee 2:
  a baneling's blast is centred on itself, so where it stands when it bursts decides whom
  it hits. SC2 has it burst on contact (range 0.25 from its edge); we take that as a
  centre distance of 1.0 (0.375 + 0.25 + a zergling's 0.375; 0.125 short of contact
  with a zealot). At SMAX's 2 it burst two units short of a clump and hit one zealot:
  so_many_baneling's random zealots won 75% of 256 episodes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Splash kinds.
SINGLE, LINE, RADIUS = 0, 1, 2
# SC2's unit attributes that our units carry (psionic, structure, ... do not occur).
ATTRIBUTES = ("light", "armored", "biological", "mechanical", "massive")


@dataclasses.dataclass(frozen=True)
class UnitType:
    name: str
    glyph: str  # one letter for renders, SMAX's shorthands where SMAX has the unit
    health: float
    damage: float  # per attack, base (without the bonus); 0 for the medivac
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
    attributes: tuple[str, ...] = ()  # SC2's, from ATTRIBUTES
    bonus: float = 0.0  # extra damage per attack against a unit with the attribute `bonus_vs`
    bonus_vs: str = ""


UNITS: dict[str, UnitType] = {
    # SMAX's six: base statistics are jaxmarl SMAX.__init__'s defaults; attributes and
    # bonuses are SC2 4.10's (liquipedia, Legacy of the Void unit pages).
    # marine: light, biological; Gauss Rifle 6, no bonus.
    "marine": UnitType(
        "marine", "m", 45.0, 9.0, 5.0, 0.61, 3.15, 9.0, 0.375, attributes=("light", "biological")
    ),
    # marauder: armored, biological; Punisher Grenades 10 (+10 vs armored), ground only.
    "marauder": UnitType(
        "marauder",
        "M",
        125.0,
        10.0,
        6.0,
        1.07,
        2.25,
        10.0,
        0.5625,
        hits_air=False,
        attributes=("armored", "biological"),
        bonus=10.0,
        bonus_vs="armored",
    ),
    # stalker: armored, mechanical; Particle Disruptors 13 (+5 vs armored) since patch 4.0
    # (10 (+4 vs armored) before it); SMAX's 13 damage and 1.87 s cooldown are the same patch's.
    "stalker": UnitType(
        "stalker",
        "s",
        160.0,
        13.0,
        6.0,
        1.87,
        4.13,
        10.0,
        0.625,
        attributes=("armored", "mechanical"),
        bonus=5.0,
        bonus_vs="armored",
    ),
    # zealot: light, biological; Psi Blades 8 x2, no bonus.
    "zealot": UnitType(
        "zealot",
        "Z",
        150.0,
        8.0,
        2.0,
        0.86,
        3.15,
        9.0,
        0.5,
        hits_air=False,
        melee=True,
        attributes=("light", "biological"),
    ),
    # zergling: light, biological; Claws 5, no bonus.
    "zergling": UnitType(
        "zergling",
        "z",
        35.0,
        5.0,
        2.0,
        0.5,
        4.13,
        8.0,
        0.375,
        hits_air=False,
        melee=True,
        attributes=("light", "biological"),
    ),
    # hydralisk: light, biological; Needle Spines 12, no bonus.
    "hydralisk": UnitType(
        "hydralisk", "h", 80.0, 12.0, 5.0, 0.59, 3.15, 9.0, 0.625, attributes=("light", "biological")
    ),
    # SC2 4.10 (see the module docstring). The medivac's `cooldown` only scales its
    # (always zero) cooldown feature in observations: heals are continuous.
    # medivac: armored, mechanical; no weapon.
    "medivac": UnitType(
        "medivac",
        "V",
        150.0,
        0.0,
        4.0,
        1.0,
        3.5,
        11.0,
        0.75,
        flying=True,
        hits_air=False,
        heal_rate=12.6,
        attributes=("armored", "mechanical"),
    ),
    # colossus: armored, mechanical, massive; Thermal Lances 10 (+5 vs light) x2.
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
        attributes=("armored", "mechanical", "massive"),
        bonus=5.0,
        bonus_vs="light",
    ),
    # baneling: biological (not light); Volatile Burst 16 (+19 vs light), 80 vs structures.
    "baneling": UnitType(
        "baneling",
        "b",
        30.0,
        16.0,
        1.0,
        0.5,
        3.5,
        8.0,
        0.375,
        hits_air=False,
        melee=True,
        splash=RADIUS,
        splash_size=2.2,
        suicide=True,
        attributes=("biological",),
        bonus=19.0,
        bonus_vs="light",
    ),
}
# SMAX's own unit indices (jaxmarl's tables are in this order).
SMAX_TYPES = ("marine", "marauder", "stalker", "zealot", "zergling", "hydralisk")
_NOT_NUMERIC = ("name", "glyph", "attributes", "bonus_vs")


def unit_table(names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-type arrays over `names` (the map's types, in the order of its type bits)."""
    rows = [UNITS[n] for n in names]
    return {
        field.name: np.array([getattr(r, field.name) for r in rows])
        for field in dataclasses.fields(UnitType)
        if field.name not in _NOT_NUMERIC
    }


def damage_table(names: tuple[str, ...], bonuses: bool = True) -> np.ndarray:
    """float32 [attacker type, target type] over `names`: the damage of one attack.

    The one rule for every unit: the attacker's base `damage`, plus its `bonus` when the
    target has the attribute `bonus_vs` (SC2's rule; no armour in this convention).
    bonuses=False: base damage against every target (jaxmarl's SMAX rule)."""
    rows = [UNITS[n] for n in names]
    table = np.array([[a.damage for _ in rows] for a in rows], np.float32)
    if bonuses:
        table += np.array([[a.bonus * (a.bonus_vs in t.attributes) for t in rows] for a in rows], np.float32)
    return table
