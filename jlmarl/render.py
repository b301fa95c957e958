"""Animated GIFs of SMAX episodes, drawn directly with Pillow.

jaxmarl's SMAX visualiser interpolates and plots every frame through matplotlib
(minutes per episode); here one jitted scan records the unit arrays of a whole
greedy episode, and each frame is a few shapes drawn into a small image (well
under a second per episode).

A frame shows the area the units use (the map cropped to their positions over the
episode, and to the walkable terrain on terrain maps), terrain (walls dark, high
ground brown, ramps tan), each unit as a disc in its team's colour with its type's
glyph and a health bar, attack lines (team colour) and heal lines (green) of the
step, and a header with the step and the return so far, over a legend of glyphs.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from jlmarl.envs.smax_terrain import HIGH, RAMP, WALL
from jlmarl.envs.smax_units import UNITS

TEAM_COLOURS = ((52, 120, 246), (230, 60, 60))  # allies, enemies
HEAL_COLOUR = (40, 190, 90)
TERRAIN_COLOURS = {WALL: (70, 70, 78), HIGH: (214, 196, 160), RAMP: (232, 218, 186)}
BACKGROUND = (245, 245, 240)
N_MOVES = 5  # SMAX's moves + stop; attack actions follow


class RenderError(ValueError):
    pass


def _targets(env, s) -> jax.Array:
    """int32 [n_units]: the unit each unit's last attack (or heal) action aimed at, -1 if none."""
    world, n_allies = env.world, env.spec.n_agents
    idx = jnp.arange(s.unit_alive.shape[0])
    action = s.prev_attack_actions
    if hasattr(world, "attack_target"):  # our world rules (medivacs aim at their own side)
        target = world.attack_target(idx, action, world.unit_stat(s, "heal_rate") > 0)
    else:  # jaxmarl's encoding: allies' slot k = enemy k, enemies' slot k = ally n_allies - 1 - k
        k = action - N_MOVES
        target = jnp.where(idx < n_allies, n_allies + k, n_allies - 1 - k)
    return jnp.where((action >= N_MOVES) & s.unit_alive, target, -1).astype(jnp.int32)


def record_episode(env, algo, train_state, key: jax.Array) -> dict[str, np.ndarray]:
    """One greedy episode's unit positions, health, liveness, targets and rewards per step."""
    if not (hasattr(env, "world") and hasattr(env, "type_names")):
        raise RenderError(f"render=true draws SMAX episodes; env={env.spec.name} is not a SMAX env")
    k_reset, k_loop = jax.random.split(key)

    @jax.jit
    def run(train_state):
        env_state, ts = env.reset(k_reset)

        def body(carry, t):
            env_state, ts, actor, active = carry
            k_act, k_env = jax.random.split(jax.random.fold_in(k_loop, t))
            privileged = {"state": ts.state[None]} if getattr(algo, "act_uses_state", False) else {}
            actions, actor = algo.act(
                train_state, actor, ts.obs[None], ts.avail[None], k_act, jnp.int32(0), True, **privileged
            )
            s = env_state.state
            env_state, ts = env.step(k_env, env_state, actions[0])
            # The frame before the step, with the targets the step's actions aimed at.
            frame = (
                s.unit_positions,
                s.unit_health,
                s.unit_alive,
                _targets(env, env_state.state),
                ts.reward,
                active,
            )
            return (env_state, ts, actor, active & ~ts.done), frame

        init = (env_state, ts, algo.init_actor(1), jnp.bool_(True))
        (last_state, *_), frames = jax.lax.scan(body, init, jnp.arange(env.spec.episode_limit))
        return frames, last_state.state

    (pos, health, alive, targets, reward, active), last = jax.device_get(run(train_state))
    n = int(active.sum()) + 1  # frames of the episode plus its final state
    no_target = np.full((1, pos.shape[1]), -1, np.int32)
    return {
        "positions": np.concatenate([pos[: n - 1], last.unit_positions[None]]),
        "health": np.concatenate([health[: n - 1], last.unit_health[None]]),
        "alive": np.concatenate([alive[: n - 1], last.unit_alive[None]]),
        "targets": np.concatenate([targets[: n - 1], no_target]),
        "returns": np.concatenate([[0.0], np.cumsum(reward[: n - 1])]),
        "teams": np.asarray(last.unit_teams),
        "types": np.asarray(last.unit_types),
    }


def _view(env, episode, margin: float = 2.0) -> tuple[float, float, float]:
    """(x0, y0, side) of the square of the map the frames show: the units' positions over
    the episode and, on terrain maps, the walkable cells, plus a margin, within the map."""
    world = env.world
    pos = episode["positions"][episode["alive"]]
    lo, hi = pos.min(0), pos.max(0)
    if env.terrain is not None:
        cells = np.argwhere(env.terrain != WALL)
        lo, hi = np.minimum(lo, cells.min(0)), np.maximum(hi, cells.max(0) + 1)
    side = float(max(hi - lo)) + 2 * margin
    side = min(side, float(max(world.map_width, world.map_height)))
    centre = (lo + hi) / 2
    x0 = float(np.clip(centre[0] - side / 2, 0, max(world.map_width - side, 0)))
    y0 = float(np.clip(centre[1] - side / 2, 0, max(world.map_height - side, 0)))
    return x0, y0, side


def draw_gif(env, episode: dict[str, np.ndarray], path: Path, size: int = 480, fps: int = 8) -> Path:
    world = env.world
    names = list(env.type_names)
    glyphs = [UNITS[n].glyph for n in names]
    max_health = np.asarray(world.unit_type_health)[episode["types"]]
    x0, y0, side = _view(env, episode)
    header, legend = 22, 20
    scale = size / side
    height = header + size + legend

    def to_px(p):  # map (x, y) -> image pixels; map y grows upwards
        return (p[0] - x0) * scale, header + size - (p[1] - y0) * scale

    radius = np.maximum(np.asarray(world.unit_type_radiuses)[episode["types"]] * scale, 6.0)
    base = Image.new("RGB", (size, height), BACKGROUND)
    draw = ImageDraw.Draw(base)
    if env.terrain is not None:
        for (cx, cy), code in np.ndenumerate(env.terrain):
            if code in TERRAIN_COLOURS:
                (ax, ay), (bx, by) = to_px((cx, cy + 1)), to_px((cx + 1, cy))
                if bx >= 0 and ax <= size and by >= header and ay <= header + size:
                    draw.rectangle((ax, ay, bx, by), fill=TERRAIN_COLOURS[code])
    draw.rectangle((0, 0, size, header - 1), fill=BACKGROUND)
    draw.rectangle((0, header + size, size, height), fill=BACKGROUND)
    present = sorted(set(episode["types"].tolist()))
    text = "   ".join(f"{glyphs[t]} {names[t]}" for t in present) + "   attack / heal lines"
    draw.text((4, header + size + 4), text, fill=(0, 0, 0))

    frames = []
    for t in range(len(episode["positions"])):
        image = base.copy()
        draw = ImageDraw.Draw(image)
        pos, alive = episode["positions"][t], episode["alive"][t]
        for u, v in enumerate(episode["targets"][t]):
            if v >= 0 and alive[u]:
                heal = episode["teams"][u] == episode["teams"][v]
                colour = HEAL_COLOUR if heal else TEAM_COLOURS[int(episode["teams"][u])]
                draw.line((*to_px(pos[u]), *to_px(pos[v])), fill=colour, width=2)
        for u in np.flatnonzero(alive):
            x, y = to_px(pos[u])
            r = float(radius[u])
            draw.ellipse(
                (x - r, y - r, x + r, y + r), fill=TEAM_COLOURS[int(episode["teams"][u])], outline=(0, 0, 0)
            )
            draw.text((x - 3, y - 6), glyphs[int(episode["types"][u])], fill=(255, 255, 255))
            frac = float(np.clip(episode["health"][t, u] / max_health[u], 0, 1))
            w = max(2 * r, 14.0)
            draw.rectangle((x - w / 2, y - r - 6, x + w / 2, y - r - 2), fill=(200, 40, 40))
            draw.rectangle((x - w / 2, y - r - 6, x - w / 2 + w * frac, y - r - 2), fill=(40, 170, 40))
        alive_counts = [int((alive & (episode["teams"] == k)).sum()) for k in (0, 1)]
        draw.text(
            (4, 5),
            f"{env.spec.name}  step {t}/{len(episode['positions']) - 1}  return {episode['returns'][t]:.2f}  "
            f"allies {alive_counts[0]}  enemies {alive_counts[1]}",
            fill=(0, 0, 0),
        )
        frames.append(image)
    path = Path(path)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return path
