"""Matrix-game reproductions: does each seed's greedy joint action hit the payoff's optimum?

    python benchmarks/matrix_games.py                     # both games, every default algo, 3 seeds
    python benchmarks/matrix_games.py --games matrix_one_step --algos lsf_sac vdn
    python benchmarks/matrix_games.py --from-runs runs/limarl_matrix runs/qmix_matrix
    python benchmarks/matrix_games.py --basin                # LSF-SAC's (A, A) basin on QTRAN's game

- matrix_three_state (seed 000, appendix D): LIMARL should pick the optimal joint action
  in every state, (B, B) in S2 included, in 3 of 3 seeds; QMIX misses S2.
- matrix_one_step (QTRAN's game, seed 003 Table I): the paper claims LSF-SAC picks (A, A) = 8
  and VDN and QMIX do not. Its setup is unspecified (no exploration, steps or seeds; its
  (A, A) block equals Q1 + Q2, QTRAN's transformed value), so we record it as "setup
  unspecified, not reproduced" and show the basin argument directly instead (--basin):
  the same LSF-SAC run started from actors whose policy puts p(A) on A (the rest split
  evenly; output layer zeroed so every history starts there). (A, B/C) pays -12, so the
  soft value of A beats B and C only when the partner plays A often enough:
  8 p - 12 (1 - p) > -12 p + 0 (1 - p), i.e. p > 3/8. Expected: p(A) >= 0.5 -> (A, A);
  uniform (p = 1/3) -> not.

Each (game, algo) is exactly the documented command
`python -m jlmarl.train algo=<algo> env=<game> num_seeds=<seeds>` (the env config brings
the papers' settings), run in a subprocess; the script reads the run's q_tables.json and
prints, per seed, the greedy joint action the trained policy took in each state (its
argmax of Q_tot as well, where the algo has one) and whether it is the payoff's optimum.
Trailing key=value pairs are passed to every run. Writes <out>/summary.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
from omegaconf import OmegaConf

from jlmarl.config import load_config
from jlmarl.train import build

DEFAULT_ALGOS = {
    "matrix_three_state": ["limarl", "qmix"],
    "matrix_one_step": ["lsf_sac", "masac", "vdn", "qmix"],
}


def optimal_actions(payoff: np.ndarray) -> list[list[int]]:
    """Per state, the payoff's optimal joint action (payoff [S, A1, A2]); ties are refused
    because "optimal" would then be ambiguous."""
    best = []
    for table in payoff:
        flat = table.reshape(-1)
        top = np.flatnonzero(flat == flat.max())
        if len(top) != 1:
            raise ValueError(f"payoff table has {len(top)} optimal joint actions: {table.tolist()}")
        best.append([int(i) for i in np.unravel_index(top[0], table.shape)])
    return best


def summarise(run_dir: Path) -> dict:
    """The run's algo, env, and per seed the greedy joint actions and which states they solve."""
    config = OmegaConf.load(run_dir / "config.yaml")
    tables = json.loads((run_dir / "q_tables.json").read_text())
    best = optimal_actions(np.asarray(tables["payoff"], dtype=float))
    seeds = []
    for seed in tables["seeds"]:
        taken = [list(map(int, state["greedy_taken"])) for state in seed["states"]]
        seeds.append(
            {
                "greedy_taken": taken,
                "argmax_q_tot": [list(map(int, state["greedy"])) for state in seed["states"]],
                "optimal_per_state": [t == b for t, b in zip(taken, best, strict=True)],
            }
        )
    return {
        "env": config.env.name,
        "algo": config.algo.name,
        "run_dir": str(run_dir),
        "optimal": best,
        "seeds": seeds,
        "seeds_all_optimal": sum(all(s["optimal_per_state"]) for s in seeds),
    }


def train(game: str, algo: str, seeds: int, out: Path, overrides: list[str]) -> tuple[Path, float]:
    run_dir = out / f"{game}_{algo}"
    if (run_dir / "q_tables.json").exists():
        print(f"[{game} {algo}] reusing {run_dir}", flush=True)
        return run_dir, float("nan")
    if run_dir.exists():
        raise SystemExit(f"{run_dir} exists without q_tables.json (unfinished?); remove it or pick --out")
    cmd = [sys.executable, "-m", "jlmarl.train", f"algo={algo}", f"env={game}", f"num_seeds={seeds}",
           f"run_dir={run_dir}", "progress=false", "plot=false", *overrides]  # fmt: skip
    print(f"[{game} {algo}] {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return run_dir, time.perf_counter() - start


BASIN_P = (1 / 3, 0.5, 0.6)


def with_actor_prior(ts, p_a: float):
    """Every seed's actors start with policy (p_a, (1 - p_a) / 2, (1 - p_a) / 2) at every
    history: the output layer's kernel zeroed, its bias log(2 p_a / (1 - p_a)) on A."""
    head = ts.params["actor"]["params"]["fc2"]
    bias = np.zeros(head["bias"].shape, np.float32)
    bias[..., 0] = np.log(2 * p_a / (1 - p_a))
    fc2 = {"kernel": np.zeros(head["kernel"].shape, np.float32), "bias": bias}
    actor = {"params": {**ts.params["actor"]["params"], "fc2": fc2}}
    return ts.replace(params={**ts.params, "actor": actor})


def greedy_joint_action(engine, train_state):
    """Each seed's greedy joint action at the game's (only) state: int [seeds, n]."""
    _, first = engine.env.reset(jax.random.PRNGKey(0))
    algo = engine.algo

    def greedy(ts):
        obs, avail = first.obs[None], first.avail[None]
        return algo.act(ts, algo.init_actor(1), obs, avail, jax.random.PRNGKey(0), 0, True)[0][0]

    return jax.jit(jax.vmap(greedy))(train_state)


def basin(seeds: int, out: Path, overrides: list[str]) -> list[dict]:
    """LSF-SAC on matrix_one_step (the env config's budget) from actors with p(A) in
    BASIN_P; per p, each seed's greedy joint action. One JSON per p in <out> (reused)."""
    rows = []
    for p_a in BASIN_P:
        path = out / f"basin_lsf_sac_pA{p_a:.3f}.json"
        if path.exists():
            print(f"[basin p(A)={p_a:.3f}] reusing {path}", flush=True)
            rows.append(json.loads(path.read_text()))
            continue
        cfg = load_config(
            ["algo=lsf_sac", "env=matrix_one_step", f"num_seeds={seeds}", "progress=false", *overrides]
        )
        engine = build(cfg)
        carry = engine.init(engine.seed_keys(list(range(seeds))))
        carry = carry.replace(train_state=with_actor_prior(carry.train_state, p_a))
        chunks = -(-int(cfg.total_steps) // int(cfg.num_envs))  # one-step episodes
        no_eval = np.zeros(seeds, bool)
        start = time.perf_counter()
        for i in range(chunks):
            carry, _, _ = engine.chunk(carry, np.int32(i), np.ones_like(no_eval), no_eval)
        taken = np.asarray(greedy_joint_action(engine, carry.train_state)).tolist()
        row = {
            "p_a": p_a,
            "greedy_taken": taken,
            "seeds_at_AA": sum(t == [0, 0] for t in taken),
            "seeds": seeds,
            "wall_s": round(time.perf_counter() - start, 1),
            "overrides": overrides,
        }
        path.write_text(json.dumps(row, indent=1))
        print(f"[basin p(A)={p_a:.3f}] greedy joint actions {taken}", flush=True)
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\n{'game':<20} {'algo':<10} {'seed':>4}  {'greedy joint action per state':<34} optimal")
    names = "ABC"
    for row in rows:
        for k, seed in enumerate(row["seeds"]):
            taken = " ".join(f"({names[a]},{names[b]})" for a, b in seed["greedy_taken"])
            marks = "".join("y" if ok else "n" for ok in seed["optimal_per_state"])
            print(f"{row['env']:<20} {row['algo']:<10} {k:>4}  {taken:<34} {marks}")
        solved = f"{row['seeds_all_optimal']}/{len(row['seeds'])}"
        print(f"{'':<20} {'':<10} {'':>4}  seeds optimal in every state: {solved}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--games", nargs="+", default=list(DEFAULT_ALGOS), choices=list(DEFAULT_ALGOS))
    parser.add_argument("--algos", nargs="+", default=None, help="default: the algos each game is about")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/matrix_games"))
    parser.add_argument("--from-runs", nargs="+", type=Path, default=None, help="summarise these run dirs")
    parser.add_argument("--basin", action="store_true", help="LSF-SAC from actors with p(A) in BASIN_P only")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    if args.basin:
        rows = basin(args.seeds, args.out, args.overrides)
        names = "ABC"
        for r in rows:
            taken = " ".join(f"({names[a]},{names[b]})" for a, b in r["greedy_taken"])
            print(f"p(A) = {r['p_a']:.3f}: {taken}  at (A,A): {r['seeds_at_AA']}/{r['seeds']}")
        return
    rows = []
    if args.from_runs:
        rows = [{"wall_s": None, **summarise(run_dir)} for run_dir in args.from_runs]
    else:
        for game in args.games:
            for algo in args.algos or DEFAULT_ALGOS[game]:
                run_dir, wall = train(game, algo, args.seeds, args.out, args.overrides)
                rows.append({"wall_s": wall, **summarise(run_dir)})
    print_table(rows)
    path = args.out / "summary.json"
    path.write_text(json.dumps({"runs": rows}, indent=1))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
