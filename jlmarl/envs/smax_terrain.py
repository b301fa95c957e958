"""Static terrain for SMAX maps: a pathing grid and precomputed shortest paths.

A map's terrain is an int8 grid `[width, height]` of 1x1 map-unit cells, indexed
`grid[x, y]` like positions (cell of a position = floor of its coordinates):
    LOW  walkable low ground          HIGH high ground (a plateau)
    WALL not walkable by ground units RAMP joins LOW and HIGH
Movement rule (`blocked`, checked on a unit's centre, one axis at a time so that units
slide along walls):
- flying units ignore terrain;
- every ground unit is stopped by WALL cells;
- ground units other than the colossus cannot step between LOW and HIGH cells: only
  through RAMP cells, which join both levels (SC2's cliffs);
- melee units cannot attack across a cliff (one on LOW, the other on HIGH).
Sight is unchanged: SMAC's observations use distance only (no high-ground vision), and
so do ranged attacks. Map edges keep SMAX's behaviour (a unit touching the map edge
dies, `walls_cause_death`); terrain maps ring themselves with WALL so that no ground
unit reaches an edge.

The scripted enemy navigates with `path_lengths`: all-pairs shortest path lengths
between cells (4-connected, by the movement rule), precomputed once per map with
scipy and carried into jit as a constant, so any unit can head for any target (its
goal or a unit it chases) around walls and cliffs in one table lookup per neighbour.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

LOW, WALL, HIGH, RAMP = 0, 1, 2, 3
UNREACHABLE = 30000  # path length of cells with no path between them (int16)


def open_grid(width: int, height: int) -> np.ndarray:
    """No terrain (SMAX's open arena)."""
    return np.full((width, height), LOW, np.int8)


def corridor_grid() -> np.ndarray:
    """32x32: the allies' chamber (west), a 2-wide, 8-long passage, the enemies' chamber (east).

    Cells (x ranges half-open): allies' chamber x 2..12, y 9..23; passage x 12..20,
    y 15..17; enemies' chamber x 20..30, y 4..28; everything else WALL. The passage is
    two zealots wide: two zealots abreast close it, and at most the few zerglings that
    fit in the 2-wide strip in front of them reach them (tests/test_smax_maps.py)."""
    grid = np.full((32, 32), WALL, np.int8)
    grid[2:12, 9:23] = LOW
    grid[12:20, 15:17] = LOW
    grid[20:30, 4:28] = LOW
    return grid


def plateau_grid() -> np.ndarray:
    """32x32 for 2c_vs_64zg: a HIGH plateau x 4..14, y 9..23 with one 2-wide RAMP on its
    east side (x 14..16, y 15..17) down to LOW ground; a WALL ring on the map edge."""
    grid = np.full((32, 32), LOW, np.int8)
    grid[4:14, 9:23] = HIGH
    grid[14:16, 15:17] = RAMP
    grid[[0, -1], :] = WALL
    grid[:, [0, -1]] = WALL
    return grid


def _steppable(a: np.ndarray, b: np.ndarray, walks_cliffs: bool) -> np.ndarray:
    """Can a ground unit step from cells of code a to cells of code b (elementwise)."""
    ok = (a != WALL) & (b != WALL)
    if not walks_cliffs:
        ok &= ~(((a == LOW) & (b == HIGH)) | ((a == HIGH) & (b == LOW)))
    return ok


@functools.cache
def _path_lengths_cached(grid_bytes: bytes, shape: tuple[int, int], walks_cliffs: bool) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import shortest_path

    grid = np.frombuffer(grid_bytes, np.int8).reshape(shape)
    ids = np.arange(grid.size).reshape(shape)
    rows, cols = [], []
    # Neighbour pairs along x, then along y; the rule is symmetric, so each pair goes both ways.
    for first, second in (
        ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
    ):
        ok = _steppable(grid[first], grid[second], walks_cliffs)
        rows += [ids[first][ok], ids[second][ok]]
        cols += [ids[second][ok], ids[first][ok]]
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(grid.size, grid.size)).tocsr()
    lengths = shortest_path(graph, unweighted=True, directed=True)
    return np.where(np.isfinite(lengths), lengths, UNREACHABLE).astype(np.int16)


def path_lengths(grid: np.ndarray, walks_cliffs: bool) -> np.ndarray:
    """int16 [cells, cells]: steps between cells (cell id = x * height + y), UNREACHABLE if none."""
    grid = np.ascontiguousarray(grid, np.int8)
    return _path_lengths_cached(grid.tobytes(), grid.shape, walks_cliffs)


# --- jit-side helpers (grid is a jnp int8 [width, height] constant) ----------------------------


def cell_of(grid: jnp.ndarray, pos: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Cell (x, y) indices of positions [..., 2], clipped to the grid."""
    idx = jnp.floor(pos).astype(jnp.int32)
    return jnp.clip(idx[..., 0], 0, grid.shape[0] - 1), jnp.clip(idx[..., 1], 0, grid.shape[1] - 1)


def code_at(grid: jnp.ndarray, pos: jnp.ndarray) -> jnp.ndarray:
    return grid[cell_of(grid, pos)]


def blocked(grid, old_pos, new_pos, flying, walks_cliffs) -> jnp.ndarray:
    """bool [...]: may a unit not move from old_pos to new_pos (both [..., 2]) by the movement rule."""
    a, b = code_at(grid, old_pos), code_at(grid, new_pos)
    cliff = ((a == LOW) & (b == HIGH)) | ((a == HIGH) & (b == LOW))
    return ~flying & ((b == WALL) | (~walks_cliffs & cliff))


def move(grid, old_pos, new_pos, flying, walks_cliffs) -> jnp.ndarray:
    """new_pos with each axis of the step undone where it would break the movement rule
    (x first, then y): a unit walking into a wall stops at it and slides along it."""
    x_step = old_pos.at[..., 0].set(new_pos[..., 0])
    pos = jnp.where(blocked(grid, old_pos, x_step, flying, walks_cliffs)[..., None], old_pos, x_step)
    y_step = pos.at[..., 1].set(new_pos[..., 1])
    return jnp.where(blocked(grid, pos, y_step, flying, walks_cliffs)[..., None], pos, y_step)


def across_cliff(grid, pos_a, pos_b) -> jnp.ndarray:
    """bool: one position on LOW and the other on HIGH (ramps join both)."""
    a, b = code_at(grid, pos_a), code_at(grid, pos_b)
    return ((a == LOW) & (b == HIGH)) | ((a == HIGH) & (b == LOW))
