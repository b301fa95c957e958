"""How often VDFD's visibility graph is complete on SMAX maps (where GALA keeps only the team mean).

    python benchmarks/gala_graphs.py [--envs smax_3m smax_5m_vs_6m smax_2s3z]
                                     [--episodes 64] [--seed 0] [--json PATH]

On a complete graph GALA's smoothing filter is J/n: every agent's encoding is the
team mean, and the decoder cannot give the agents back their own features
(tests/test_vdfd.py::test_on_a_complete_graph_gala_keeps_only_the_team_mean).
`vdfd.graph=full` is complete by construction; this measures `vdfd.graph=visibility`
(jlmarl.algos.vdfd.visibility_adjacency, the graph VDFD builds) over episodes played
with uniformly random valid actions. Per map: over steps with at least two allies
alive, the share where every pair of live allies is linked (complete), and the mean
share of live pairs linked (edge density).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jlmarl.algos.vdfd import VISIBILITY, visibility_adjacency
from jlmarl.envs.base import random_actions
from jlmarl.envs.registry import make

ROOT = Path(__file__).resolve().parents[1]


def graph_stats(name: str, episodes: int, seed: int) -> dict:
    env = make(name)
    n, limit = env.spec.n_agents, env.spec.episode_limit

    def episode(key):
        k0, key = jax.random.split(key)
        state, ts = env.reset(k0)

        def step(carry, k):
            state, ts, over = carry
            vis = ts.extras[VISIBILITY]
            alive = jnp.diagonal(vis)
            pairs = alive[:, None] & alive[None, :] & ~jnp.eye(n, dtype=bool)
            linked = visibility_adjacency(vis) > 0
            counted = ~over & (alive.sum() >= 2)
            complete = jnp.all(linked == pairs)
            density = linked.sum() / jnp.maximum(pairs.sum(), 1)
            k_act, k_env = jax.random.split(k)
            state, ts = env.step(k_env, state, random_actions(k_act, ts.avail))
            return (state, ts, over | ts.done), (counted, complete, density)

        _, out = jax.lax.scan(step, (state, ts, jnp.bool_(False)), jax.random.split(key, limit))
        return out

    counted, complete, density = jax.jit(jax.vmap(episode))(
        jax.random.split(jax.random.PRNGKey(seed), episodes)
    )
    counted = np.asarray(counted)
    return {
        "env": name,
        "n_agents": n,
        "episodes": episodes,
        "steps_counted": int(counted.sum()),
        "complete_share": float(np.asarray(complete)[counted].mean()),
        "edge_density": float(np.asarray(density)[counted].mean()),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["smax_3m", "smax_5m_vs_6m", "smax_2s3z"])
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "gala_graphs.json")
    args = parser.parse_args()
    rows = [graph_stats(name, args.episodes, args.seed) for name in args.envs]
    print(f"{'env':<16}{'agents':>7}{'steps':>8}{'complete':>10}{'density':>9}")
    for r in rows:
        print(
            f"{r['env']:<16}{r['n_agents']:>7}{r['steps_counted']:>8}"
            f"{r['complete_share']:>10.3f}{r['edge_density']:>9.3f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"policy": "uniform random valid actions", "rows": rows}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
