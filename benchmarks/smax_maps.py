"""Sanity table for the SMAX world maps: env-only throughput and scripted-policy win rates.

    python benchmarks/smax_maps.py [--maps corridor MMM ...] [--episodes 256]
    python benchmarks/smax_maps.py --throughput-only --maps 3m 2s3z   # any smax_ map, A/B runs
    python benchmarks/smax_maps.py --markdown   # the README's table from the JSON, runs nothing

For each map: env steps per second (random actions, AutoReset, jitted scan) at 64 and 512
parallel envs (median of --repeats timings), and the win rate with a Wilson 95% interval
over --episodes episodes of three scripted policies, which read the env state:
- random: a uniformly random available action;
- attack_nearest: attack the nearest attackable enemy, else walk (by the map's paths)
  towards the nearest living enemy; medivacs heal the most injured ally in range, else
  follow the nearest ally;
- focus_fire: the same, but attack the lowest-health attackable enemy.
corridor also runs hold_choke (the zealots stand in a concave 2.0 around the passage's
west exit, step in to engage a zergling within 3.5, and focus fire: the zerglings come
out of the passage a few at a time, into reach of several zealots), with the passage and
on the open map (`terrain=False`), so the table shows whether the choke matters.
so_many_baneling also runs spread (a zealot within 3.0 of another steps away from the
nearest one, else attacks the first enemy in range, else waits: a blast then catches
one zealot), SMAC's trick for that map, so the table shows that it is winnable.

Prints a table and writes benchmarks/results/smax_maps.json (--out).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jlmarl.envs as envs
from jlmarl.envs import AutoReset, random_actions

POLICIES = ("random", "attack_nearest", "focus_fire")
# hold_choke's concave: six points 2.0 (one zealot's attack range) from the passage's west
# exit (12, 16), 30 degrees apart (1.04 apart, > a zealot's 1.0 width), sorted by y.
_ANGLES = np.deg2rad(np.arange(105.0, 256.0, 30.0))
HOLD = jnp.asarray(
    sorted(zip(12.0 + 2.0 * np.cos(_ANGLES), 16.0 + 2.0 * np.sin(_ANGLES), strict=True), key=lambda p: p[1])
)
N_MOVES, STOP = 5, 4
SPREAD = 3.0  # spread's distance to the nearest ally (a baneling's blast reaches 2.7 to a zealot's centre)


def wilson(wins: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a binomial proportion."""
    p = wins / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def throughput(name: str, n_envs: int, steps: int, repeats: int) -> float:
    """Median env steps per second: n_envs AutoReset streams of random available actions."""
    env = AutoReset(envs.make(name))

    def run(keys):
        states, ts = jax.vmap(env.reset)(keys)

        def body(carry, key):
            states, avail = carry
            k_act, k_step = jax.random.split(key)
            actions = random_actions(k_act, avail)
            states, ts = jax.vmap(env.step)(jax.random.split(k_step, n_envs), states, actions)
            return (states, ts.avail), ts.reward.sum()

        return jax.lax.scan(body, (states, ts.avail), jax.random.split(keys[0], steps))[1].sum()

    run = jax.jit(run)
    keys = jax.random.split(jax.random.key(0), n_envs)
    run(keys).block_until_ready()  # compile
    times = []
    for r in range(repeats):
        keys = jax.random.split(jax.random.key(r + 1), n_envs)
        t0 = time.perf_counter()
        run(keys).block_until_ready()
        times.append(time.perf_counter() - t0)
    return n_envs * steps / float(np.median(times))


def scripted_actions(env, env_state, ts, key, policy):
    """Actions [n_agents] of scripted policy `policy` (int: index into POLICIES, 3 = hold_choke,
    4 = spread)."""
    w, s = env.world, env_state.state
    n_a = env.spec.n_agents
    allies = jnp.arange(n_a)
    avail = ts.avail
    pos, health = s.unit_positions, s.unit_health
    fraction = health / w.unit_stat(s, "health")
    heals = w.unit_stat(s, "heal_rate")[:n_a] > 0
    slots = jnp.arange(avail.shape[1] - N_MOVES)
    targets = w.attack_target(allies[:, None], N_MOVES + slots[None, :], heals[:, None])  # [ally, slot]
    dist = jnp.linalg.norm(pos[targets] - pos[allies][:, None], axis=-1)
    ok = avail[:, N_MOVES:]
    nearest = jnp.argmin(jnp.where(ok, dist, jnp.inf), axis=-1)
    lowest = jnp.argmin(jnp.where(ok, fraction[targets] + 1e-3 * dist, jnp.inf), axis=-1)
    pick = jnp.where(heals | (policy != 1), lowest, nearest)  # medivacs heal the most injured
    # Where to walk: the nearest living enemy, for medivacs the nearest fighting ally.
    enemy = jnp.arange(n_a, w.num_agents)
    d_enemy = jnp.linalg.norm(pos[enemy][None] - pos[allies][:, None], axis=-1)
    chase = pos[enemy][jnp.argmin(jnp.where(s.unit_alive[enemy][None], d_enemy, jnp.inf), axis=-1)]
    fighting = s.unit_alive[:n_a] & ~heals
    d_ally = jnp.linalg.norm(pos[allies][None] - pos[allies][:, None], axis=-1)
    follow = pos[allies][jnp.argmin(jnp.where(fighting[None], d_ally, jnp.inf), axis=-1)]
    point = jnp.where(heals[:, None], follow, chase)
    if n_a == len(HOLD):  # corridor: the zealot with the k-th lowest y takes the k-th point,
        # and steps out of it only to engage a zergling within 3.5 (one at the passage's exit)
        rank = jnp.argsort(jnp.argsort(pos[allies, 1]))
        engage = jnp.min(jnp.where(s.unit_alive[enemy][None], d_enemy, jnp.inf), axis=-1) < 3.5
        point = jnp.where((policy == 3) & ~engage[:, None], HOLD[rank], point)
    move = w.heading(s, allies, point)
    arrived = jnp.linalg.norm(point - pos[allies], axis=-1) < jnp.where(
        policy == 3, 0.8, 1.0
    )  # a zealot walks 1.6 a step
    move = jnp.where(arrived, STOP, move)
    act = jnp.where(jnp.any(ok, axis=-1), N_MOVES + pick, move)
    # spread: away from the nearest living ally while within SPREAD of it
    d_mates = jnp.where(s.unit_alive[allies][None] & ~jnp.eye(n_a, dtype=bool), d_ally, jnp.inf)
    crowded = jnp.min(d_mates, axis=-1) < SPREAD
    away = pos[allies] - pos[allies][jnp.argmin(d_mates, axis=-1)]
    spread = jnp.where(crowded, w.heading(s, allies, pos[allies] + away), STOP)
    spread = jnp.where(~crowded & jnp.any(ok, axis=-1), N_MOVES + jnp.argmax(ok, axis=-1), spread)
    act = jnp.where(policy == 4, spread, act)
    act = jnp.where(s.unit_alive[allies], act, STOP)
    return jnp.where(policy == 0, random_actions(key, avail), act).astype(jnp.int32)


def win_rates(name: str, policies: tuple[int, ...], episodes: int, **kwargs) -> dict[int, tuple[int, float]]:
    """policy -> (wins, mean return) over `episodes` episodes each, one jitted program."""
    env = envs.make(name, **kwargs)
    limit = env.spec.episode_limit

    def episode(key, policy):
        k_reset, k_run = jax.random.split(key)
        env_state, ts = env.reset(k_reset)

        def body(carry, k):
            env_state, ts, done, won, ret = carry
            k_act, k_step = jax.random.split(k)
            actions = scripted_actions(env, env_state, ts, k_act, policy)
            env_state, ts = env.step(k_step, env_state, actions)
            won = jnp.where(done, won, ts.info["won"])
            ret = ret + jnp.where(done, 0.0, ts.reward)
            return (env_state, ts, done | ts.done, won, ret), None

        init = (env_state, ts, jnp.bool_(False), jnp.float32(0), jnp.float32(0))
        (_, _, _, won, ret), _ = jax.lax.scan(body, init, jax.random.split(k_run, limit))
        return won, ret

    policy = jnp.repeat(jnp.asarray(policies), episodes)
    keys = jax.random.split(jax.random.key(123), len(policy))
    won, ret = jax.device_get(jax.jit(jax.vmap(episode))(keys, policy))
    won, ret = won.reshape(len(policies), episodes), ret.reshape(len(policies), episodes)
    return {p: (int(won[i].sum()), float(ret[i].mean())) for i, p in enumerate(policies)}


def markdown_table(maps: dict) -> str:
    """The README's sanity table from the JSON's maps."""

    def rate(row, policy):
        v = row.get("win_rate", {}).get(policy)
        return "—" if v is None else f"{v['rate']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"

    lines = [
        "| map | episodes | steps/s 64 envs | steps/s 512 envs | random | attack nearest | focus fire |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in maps.items():
        sps = [row["steps_per_s"].get(n, row["steps_per_s"].get(str(n))) for n in (64, 512)]
        episodes = next(iter(row.get("win_rate", {}).values()), {}).get("episodes", "—")
        cells = [f"`{name}`", str(episodes), *("—" if v is None else f"{v:,.0f}" for v in sps)]
        lines.append("| " + " | ".join(cells + [rate(row, p) for p in POLICIES]) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--maps", nargs="+", help="map names without smax_ (default: every world map)")
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--envs", nargs="+", type=int, default=[64, 512])
    parser.add_argument("--steps", type=int, default=50, help="env steps per throughput timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--throughput-only", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/smax_maps.json")
    parser.add_argument("--merge", action="store_true", help="add to the maps already in --out")
    parser.add_argument(
        "--markdown", action="store_true", help="print --out as the README's table; run nothing"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table(json.loads(Path(args.out).read_text())["maps"]))
        return
    if args.maps is None:  # imported here: --throughput-only A/B runs import an older jlmarl
        from jlmarl.envs.smax_maps import MAPS

        args.maps = list(MAPS)

    out = Path(args.out)
    results = {}
    if args.merge and out.exists():  # keep the maps an earlier run measured
        results = json.loads(out.read_text())["maps"]
        for row in results.values():  # JSON keys are strings
            row["steps_per_s"] = {int(n): v for n, v in row["steps_per_s"].items()}
    meta = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}",
        "backend": jax.default_backend(),
        "episodes": args.episodes,
    }
    for m in args.maps:
        name = f"smax_{m}"
        row = {"steps_per_s": {n: throughput(name, n, args.steps, args.repeats) for n in args.envs}}
        print(
            name, " ".join(f"{n} envs: {v:,.0f} steps/s" for n, v in row["steps_per_s"].items()), flush=True
        )
        if not args.throughput_only:
            policies = {"corridor": (0, 1, 2, 3), "so_many_baneling": (0, 1, 2, 4)}.get(m, (0, 1, 2))
            rates = win_rates(name, policies, args.episodes)
            labels = POLICIES + ("hold_choke", "spread")
            row["win_rate"] = {
                labels[p]: {
                    "wins": k,
                    "episodes": args.episodes,
                    "rate": k / args.episodes,
                    "ci95": wilson(k, args.episodes),
                    "return_mean": r,
                }
                for p, (k, r) in rates.items()
            }
            if m == "corridor":
                k, r = win_rates(name, (3,), args.episodes, terrain=False)[3]
                row["win_rate"]["hold_choke_open_map"] = {
                    "wins": k,
                    "episodes": args.episodes,
                    "rate": k / args.episodes,
                    "ci95": wilson(k, args.episodes),
                    "return_mean": r,
                }
            for label, v in row["win_rate"].items():
                low, high = v["ci95"]
                rate, ret = v["rate"], v["return_mean"]
                print(f"  {label:<20} win {rate:.3f} [{low:.3f}, {high:.3f}]  return {ret:.2f}", flush=True)
        row["run"] = {**meta, "load_average": os.getloadavg()}  # shared machine: read steps/s with it
        results[name] = row
        if not args.throughput_only:  # after every map, so an interrupted run keeps its maps
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"meta": meta, "maps": results}, indent=1))

    print()
    header = f"{'map':<24}" + "".join(f"{f'{n} envs/s':>14}" for n in args.envs)
    if not args.throughput_only:
        header += "".join(f"{p:>16}" for p in POLICIES)
    print(header)
    for name, row in results.items():
        line = f"{name:<24}" + "".join(
            f"{row['steps_per_s'].get(n, float('nan')):>14,.0f}" for n in args.envs
        )
        if "win_rate" in row and all(p in row["win_rate"] for p in POLICIES):
            line += "".join(f"{row['win_rate'][p]['rate']:>16.3f}" for p in POLICIES)
        print(line)
    if "smax_corridor" in results and "win_rate" in results["smax_corridor"]:
        wr = results["smax_corridor"]["win_rate"]
        for label in ("hold_choke", "hold_choke_open_map"):
            low, high = wr[label]["ci95"]
            print(f"corridor {label:<20} {wr[label]['rate']:.3f} [{low:.3f}, {high:.3f}]")
    spread = results.get("smax_so_many_baneling", {}).get("win_rate", {}).get("spread")
    if spread:
        low, high = spread["ci95"]
        print(f"so_many_baneling {'spread':<12} {spread['rate']:.3f} [{low:.3f}, {high:.3f}]")

    if not args.throughput_only:
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
