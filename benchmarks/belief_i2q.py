"""Belief-I2Q against its recurrent baselines (seed 002), and the belief model's quality.

    python benchmarks/belief_i2q.py                       # the full version (5 seeds, 20k episodes per run)
    python benchmarks/belief_i2q.py --episodes 2000 --belief-steps 1000 --envs oracle   # a short one
    python benchmarks/belief_i2q.py --grid --episodes 10000 --envs oracle oracle_shared \
        --out benchmarks/results/belief_i2q_grid     # issue 19's comparison (resumable)

Every finished (env, algo, variant) run is written to <out>/runs/<env>__<algo>__<variant>.json
and reused by a rerun with the same settings, so an interrupted sweep continues where it
stopped; a run in progress saves itself at every evaluation (<env>__<algo>__<variant>.progress.pkl
beside it, removed when it finishes) and continues from there. --grid adds, for belief_i2q and rec_i2q, the
2 x 2 of Qss context {on, off} x f-error reduction {sum, mean} (the defaults, off and mean,
are the paper's and run first); --transitions K trains on K uniformly drawn transitions per
update (algo.transitions; the paper's code: 128) instead of whole episodes.

For each env (oracle, honeycomb by default):
1. pre-trains the belief model once (jlmarl.pretrain_belief, uniform random policy,
   --belief-episodes episodes from random starts where the env has them, as the paper
   does; --belief-steps gradient steps; seed 0), or reuses the checkpoint already in --out;
2. trains belief_i2q, rec_i2q and rec_hyst_iql with --seeds seeds vmapped in one
   program each, for exactly --episodes episodes per seed (the same for every method:
   chunks of num_envs episodes, not env steps), evaluating greedily every
   --eval-every episodes on test_episodes episodes; the training regime is the
   public code's update rate (ENGINE below: ten updates per episode, epsilon 0.6 -> 0 over
   the run), on whole episodes unless --transitions;
3. writes the curves (mean and 95% t-interval over seeds of the greedy test return,
   against episodes) as PNG and JSON, and prints per method the final return (each
   seed's mean over the evaluations in the last --final-frac of training: one
   evaluation of 32 episodes is too noisy to compare methods by) and the mean return
   over all evaluations (area under the curve: the "converges faster" claim), each
   with its 95% t-interval over seeds.
On oracle (and oracle_shared) it also prints the belief-quality table: the decoded belief about the
correct box against the truth, per agent and step, before the agent's oracle visit
(split by whether it has stood at a wrong box, which rules that box out), in the
step of the reveal, and after it (squared error, argmax accuracy, belief mass left on
boxes seen to be wrong), on fresh random-start random-policy episodes.

Trailing key=value pairs override the run config (e.g. batch_size=64 algo.lr=3e-4).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from jlmarl import envs
from jlmarl.algos.belief_model import collect_episodes, evaluate_belief, load_belief
from jlmarl.config import load_config
from jlmarl.envs import oracle
from jlmarl.pretrain_belief import pretrain
from jlmarl.train import build

ALGOS = ("belief_i2q", "rec_i2q", "rec_hyst_iql")
SHOWN = ("test_return_mean",)  # printed and stored per seed; the other test metrics as means
# The public code's update rate, not its whole regime: ten updates per episode, Polyak
# targets, epsilon falling linearly from 0.6 towards 0 over episodes x episode_limit steps
# (set per run); each update on 4 whole episodes (~100-160 agent transitions), or on
# --transitions uniformly drawn ones (the public code: 128) from a batch of 32 episodes.
ENGINE = ["num_envs=16", "episodes_per_update=0.1", "batch_size=4", "buffer_size=5000", "test_episodes=32"]
ORACLES = ("oracle", "oracle_shared")  # the belief table is theirs
RANDOM_START_ENVS = ORACLES  # belief data from random starts, as the paper collects it


def ci95(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half-width of the 95% t-interval over axis 0."""
    n = values.shape[0]
    mean = values.mean(0)
    if n < 2:
        return mean, np.zeros_like(mean)
    half = stats.t.ppf(0.975, n - 1) * values.std(0, ddof=1) / np.sqrt(n)
    return mean, half


# (variant name, overrides) of issue 19's 2 x 2, for belief_i2q and rec_i2q; the first is the default.
GRID = (
    ("qss_o_f_mean", ["algo.qss_context=false", "algo.f_error=mean"]),
    ("qss_o_f_sum", ["algo.qss_context=false", "algo.f_error=sum"]),
    ("qss_oc_f_mean", ["algo.qss_context=true", "algo.f_error=mean"]),
    ("qss_oc_f_sum", ["algo.qss_context=true", "algo.f_error=sum"]),
)


def jobs(envs_: list[str], algos: list[str], grid: bool) -> list[tuple[str, str, str, list[str]]]:
    """(env, algo, variant, overrides) in the order they run: every method at its
    defaults first, then the rest of the grid."""
    out = []
    for env in envs_:
        out += [(env, algo, "default", []) for algo in algos]
        if grid:
            out += [(env, a, v, o) for v, o in GRID[1:] for a in algos if a in ("belief_i2q", "rec_i2q")]
    return out


def belief_checkpoint(env: str, args, out: Path) -> tuple[Path, dict]:
    path = (out / f"belief_{env}").resolve()
    recorded = json.loads((path / "belief.json").read_text()) if (path / "belief.json").exists() else None
    if recorded and (path / "params").exists():
        print(f"[{env}] reusing the belief model in {path}", flush=True)
        return path, recorded["metrics"]
    overrides = [
        "algo=belief_i2q",
        f"env={env}",
        f"belief_i2q.checkpoint={path}",
        f"belief_i2q.episodes={args.belief_episodes}",
        f"belief_i2q.train_steps={args.belief_steps}",
        f"belief_i2q.random_start={str(env in RANDOM_START_ENVS).lower()}",
    ]
    print(f"[{env}] pre-training the belief model ({args.belief_episodes} episodes)", flush=True)
    # git keeps belief.json but not the parameters: a fresh clone pre-trains again, which gives the
    # same model only if its evaluation matches the recorded one (same seed, same numbers)
    (path / "belief.json").unlink(missing_ok=True)
    metrics = pretrain(load_config(overrides), log_every=max(args.belief_steps // 5, 1))
    evaluation = ("belief_error_by_t", "recon_by_t", "kl_by_t", "prior_mean_error")
    if recorded and any(metrics[k] != recorded["metrics"][k] for k in evaluation):
        print(f"[{env}] WARNING: the re-trained belief model differs from the recorded one; runs "
              f"already saved in {out} used the old one", flush=True)  # fmt: skip
    return path, metrics


def save_progress(path: Path, key: dict, i: int, carry, points: list, times: tuple[float, float]) -> None:
    """The run so far (after chunk i; times: its wall and compile seconds), written whole
    or not at all: a run stopped at any moment continues from its last evaluation."""
    state = {"key": key, "i": i, "carry": jax.device_get(carry), "points": points, "times": times}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(pickle.dumps(state))
    os.replace(tmp, path)


def load_progress(path: Path, key: dict, template):
    """(i, carry, points, times) saved for the same run, or None (no file, another
    run's, or a carry of other shapes or types than the template's)."""
    if not path.exists():
        return None
    state = pickle.loads(path.read_bytes())
    if state["key"] != key or _leaf_types(state["carry"]) != _leaf_types(template):
        return None
    return state["i"], jax.tree.map(jnp.asarray, state["carry"]), state["points"], state["times"]


def _leaf_types(tree) -> list:
    return [(np.shape(x), np.dtype(x.dtype)) for x in jax.tree.leaves(tree)]


def train_curves(algo: str, env: str, ckpt: Path, args, extra: list[str], progress: Path) -> dict:
    overrides = [
        f"algo={algo}",
        f"env={env}",
        f"num_seeds={args.seeds}",
        f"seed={args.seed}",
        "progress=false",
        *(e for e in ENGINE if e.split("=")[0] not in {x.split("=")[0] for x in extra}),
        "algo.epsilon_finish=0.0",
        f"algo.epsilon_anneal_steps={args.episodes * envs.make(env).spec.episode_limit}",
        *extra,
    ]
    if algo == "belief_i2q":
        overrides.append(f"belief_i2q.checkpoint={ckpt}")
    cfg = load_config(overrides)
    engine = build(cfg)
    num_envs = int(cfg.num_envs)
    chunks = -(-args.episodes // num_envs)
    eval_every = max(1, args.eval_every // num_envs)
    seeds = [args.seed + k for k in range(args.seeds)]
    t0 = time.time()
    carry = engine.init(engine.seed_keys(seeds))
    all_due = np.ones(args.seeds, bool)
    key = {"overrides": overrides, "episodes": args.episodes, "eval_every": args.eval_every}
    found = load_progress(progress, key, carry)
    if found is None:  # the evaluation before any training
        carry, _, test = engine.chunk(carry, np.int32(0), np.zeros_like(all_due), all_due)
        points, start = [(0, np.zeros(args.seeds), jax.device_get(test))], 0
        compile_s = time.time() - t0
    else:  # the wall time then counts this process's compile on top of the time before
        done, carry, points, (elapsed, compile_s) = found
        start, t0 = done + 1, t0 - elapsed
        print(f"[{env} {algo}] continuing after episode {start * num_envs} from {progress}", flush=True)
    for i in range(start, chunks):
        due = all_due if ((i + 1) % eval_every == 0 or i == chunks - 1) else ~all_due
        carry, _, test = engine.chunk(carry, np.int32(i), all_due, due)
        if due.any():
            test, steps = jax.device_get((test, carry.env_steps))
            points.append(((i + 1) * num_envs, np.asarray(steps), test))
            ret = test["test_return_mean"]
            # Means of the env's info keys (oracle: win and oracle-visit rates) show the greedy route.
            info = " ".join(f"{k[5:]} {np.mean(v):.2f}" for k, v in sorted(test.items()) if k not in SHOWN)
            print(
                f"[{env} {algo}] episodes {(i + 1) * num_envs} test_return {ret.mean():.3f} "
                f"(seeds {np.array2string(ret, precision=2)}) {info} {time.time() - t0:.0f}s",
                flush=True,
            )
            save_progress(progress, key, i, carry, points, (time.time() - t0, compile_s))
    returns = np.array([p[2]["test_return_mean"] for p in points]).T  # [seeds, points]
    mean, half = ci95(returns)
    episodes = np.array([p[0] for p in points])
    final = returns[:, episodes >= (1 - args.final_frac) * episodes[-1]].mean(1)
    auc = returns[:, 1:].mean(1)  # every evaluation after training started
    curve = {
        "algo": algo,
        "env": env,
        "seeds": seeds,
        "episodes": [p[0] for p in points],
        "env_steps_mean": [float(np.mean(p[1])) for p in points],
        "test_return_per_seed": returns.tolist(),
        "test_return_mean": mean.tolist(),
        "test_return_ci95": half.tolist(),
        "final_return_per_seed": final.tolist(),
        "final_return": [float(x) for x in ci95(final)],  # mean, 95% half-width
        "auc_return_per_seed": auc.tolist(),
        "auc_return": [float(x) for x in ci95(auc)],
        "compile_s": round(compile_s, 1),
        "wall_s": round(time.time() - t0, 1),
        "overrides": overrides,
    }
    for key in sorted(points[0][2]):
        if key not in SHOWN:  # per evaluation, the mean over seeds of each env info key
            curve[f"{key}_by_eval"] = [float(np.mean(p[2][key])) for p in points]
    return curve


def oracle_belief_table(name: str, ckpt: Path, n_episodes: int, seed: int) -> dict:
    """Belief about the correct box vs the truth, split by what the agent has seen:
    nothing, the reveal, or a wrong box (still running, so not the correct one), on
    random-start random-policy episodes (from the centre, random walks seldom get anywhere).
    "The visit" is the agent's own first oracle visit and a wrong box one it stood at
    (oracle_shared: anyone's, as each agent sees both)."""
    env = envs.make(name, random_start=True)
    spec = env.spec
    model, params, _ = load_belief(ckpt, spec)
    k_data, k_eval = jax.random.split(jax.random.PRNGKey(seed + 1000))
    batch = collect_episodes(env, k_data, n_episodes)
    ev = evaluate_belief(model, params, spec, batch, k_eval, 2, 0.5)
    belief, label = ev["belief"], ev["label"]  # [B, T+1, n, 3], [B, T+1, 3]
    valid = np.concatenate([np.ones_like(batch.mask[:, :1]), batch.mask], axis=1)  # [B, T+1]
    visited = np.asarray(batch.state[..., 4:6]) > 0.5  # [B, T+1, n] after the step into obs t
    if env.shared_view:
        visited = np.broadcast_to(visited.any(-1, keepdims=True), visited.shape)
    reveal = np.asarray(batch.obs[..., -3:]).sum(-1) > 0.5  # the one step that shows the box
    err = ((belief - label[:, :, None]) ** 2).sum(-1)
    correct = belief.argmax(-1) == label[:, :, None].argmax(-1)
    valid_n = np.broadcast_to(np.asarray(valid)[..., None], err.shape) > 0
    pos = np.asarray(batch.state[..., :4]).reshape(*err.shape, 2) * oracle.RESOLUTION
    at_box = ((pos[..., None, :] - oracle.BOXES) ** 2).sum(-1) <= oracle.REACH_SQ  # [B, T+1, n, 3]
    if env.shared_view:  # each agent sees where the other stands too
        at_box = np.broadcast_to(at_box.any(2, keepdims=True), at_box.shape)
    wrong = np.logical_or.accumulate(at_box, axis=1) & ~label[:, :, None].astype(bool)
    seen_wrong = wrong.any(-1)
    groups = {
        "before the visit": valid_n & ~visited,
        "  nothing seen": valid_n & ~visited & ~seen_wrong,
        "  a wrong box seen": valid_n & ~visited & seen_wrong,
        "reveal step": valid_n & reveal,
        "after the visit": valid_n & visited & ~reveal,
    }
    wrong_mass = (belief * wrong).sum(-1)  # belief left on boxes the agent has seen to be wrong
    table = {}
    for name, sel in groups.items():
        count = int(sel.sum())
        table[name] = {
            "count": count,
            "sq_error": float(err[sel].mean()) if count else None,
            "accuracy": float(correct[sel].mean()) if count else None,
            "mass_on_seen_wrong_boxes": float(wrong_mass[sel].mean()) if count else None,
        }
    t_idx = np.broadcast_to(np.arange(err.shape[1])[None, :, None], err.shape)
    by_t = []
    for lo, hi in ((0, 1), (1, 10), (10, 20), (20, 30), (30, err.shape[1])):
        row = {"t": f"{lo}-{hi - 1}"}
        for name, sel in (("before", groups["before the visit"]), ("after", groups["after the visit"])):
            s = sel & (t_idx >= lo) & (t_idx < hi)
            row[f"{name}_count"] = int(s.sum())
            row[f"{name}_accuracy"] = float(correct[s].mean()) if s.any() else None
        by_t.append(row)
    return {"episodes": n_episodes, "groups": table, "by_t": by_t}


def plot(curves: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({c["env"] for c in curves})
    fig, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs), 4), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for c in (c for c in curves if c["env"] == env):
            x, m, h = (
                np.array(c["episodes"]),
                np.array(c["test_return_mean"]),
                np.array(c["test_return_ci95"]),
            )
            ax.plot(x, m, label=c["algo"])
            ax.fill_between(x, m - h, m + h, alpha=0.2)
        ax.set_title(f"{env} ({len(curves[0]['seeds'])} seeds, mean and 95% CI)")
        ax.set_xlabel("episodes")
        ax.set_ylabel("greedy test return")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=["oracle", "honeycomb"])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=20000, help="training episodes per seed and method")
    parser.add_argument("--eval-every", type=int, default=1000, help="episodes between greedy evaluations")
    parser.add_argument(
        "--final-frac",
        type=float,
        default=0.2,
        help="the final return averages the evaluations in this last fraction of training",
    )
    parser.add_argument("--belief-episodes", type=int, default=5000)
    parser.add_argument("--belief-steps", type=int, default=3000)
    parser.add_argument(
        "--table-episodes", type=int, default=4000, help="episodes of the oracle belief table"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/belief_i2q"))
    parser.add_argument("--json", type=Path, default=None, help="summary JSON (default: <out>/summary.json)")
    parser.add_argument("--grid", action="store_true", help="also the 2 x 2 Qss context x f-error grid")
    parser.add_argument(
        "--transitions", type=int, default=0, help="K > 0: train on K uniform transitions per update"
    )
    parser.add_argument("overrides", nargs="*", help="key=value run-config overrides")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    result = {"args": {k: str(v) for k, v in vars(args).items()}, "belief": {}, "curves": []}
    runs = args.out / "runs"
    runs.mkdir(exist_ok=True)
    summary = args.json or args.out / "summary.json"
    drawn = [f"algo.transitions={args.transitions}", "batch_size=32"] if args.transitions else []
    extra = [*drawn, *args.overrides]
    for env, algo, variant, overrides in jobs(args.envs, args.algos, args.grid):
        if env not in result["belief"]:
            ckpt, metrics = belief_checkpoint(env, args, args.out)
            result["belief"][env] = {
                "checkpoint": str(ckpt),
                "belief_error_by_t": metrics["belief_error_by_t"],
                "kl_by_t": metrics["kl_by_t"],
                "prior_mean_error": metrics["prior_mean_error"],
            }
            if env in ORACLES:
                result["belief"][env]["table"] = oracle_belief_table(
                    env, ckpt, args.table_episodes, args.seed
                )
        path = runs / f"{env}__{algo}__{variant}.json"
        settings = {
            "episodes": args.episodes,
            "seeds": args.seeds,
            "seed": args.seed,
            "extra": [*extra, *overrides],
        }
        if path.exists() and json.loads(path.read_text()).get("settings") == settings:
            print(f"[{env} {algo} {variant}] reusing {path}", flush=True)
            curve = json.loads(path.read_text())
        else:
            progress = path.with_suffix(".progress.pkl")
            curve = train_curves(
                algo, env, Path(result["belief"][env]["checkpoint"]), args, [*extra, *overrides], progress
            )
            curve.update(variant=variant, settings=settings)
            path.write_text(json.dumps(curve, indent=1))
            progress.unlink(missing_ok=True)
        result["curves"].append(curve)
        summary.write_text(json.dumps(result, indent=1))
    plot([c for c in result["curves"] if c.get("variant", "default") == "default"], args.out / "curves.png")
    summary.write_text(json.dumps(result, indent=1))
    print_summary(result)


def print_summary(result: dict) -> None:
    print(
        f"\n{'env':<10} {'algo':<28} {'episodes':>8} {'final return (95% CI)':>22} "
        f"{'mean over training':>20} {'env steps':>10}"
    )
    for c in result["curves"]:
        (m, h), (a, ah) = c["final_return"], c["auc_return"]
        name = c["algo"] + ("" if c.get("variant", "default") == "default" else f" {c['variant']}")
        row = f"{c['env']:<10} {name:<28} {c['episodes'][-1]:>8} {m:>12.3f} ± {h:<7.3f} "
        print(row + f"{a:>10.3f} ± {ah:<7.3f} {c['env_steps_mean'][-1]:>10.0f}")
    for env in result["belief"]:
        by_algo = {
            c["algo"]: c
            for c in result["curves"]
            if c["env"] == env and c.get("variant", "default") == "default"
        }
        if {"belief_i2q", "rec_i2q"} <= by_algo.keys():
            (b, bh), (r, rh) = by_algo["belief_i2q"]["final_return"], by_algo["rec_i2q"]["final_return"]
            verdict = "above" if b - bh > r + rh else "below" if b + bh < r - rh else "not separated from"
            print(f"[{env}] Belief-I2Q's final return is {verdict} Rec-I2Q's (95% CIs)")
    for env, b in result["belief"].items():
        err = ", ".join(
            f"{e:.3f}" for e in b["belief_error_by_t"][:: max(1, len(b["belief_error_by_t"]) // 8)]
        )
        print(
            f"\n[{env}] belief error by t (every few steps): {err}; "
            f"no-history baseline {b['prior_mean_error']:.3f}"
        )
        if "table" in b:
            print(f"{'oracle belief':<20} {'count':>7} {'sq_error':>9} {'accuracy':>9} {'on seen wrong':>14}")
            for name, g in b["table"]["groups"].items():
                fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
                wrong = fmt(g["mass_on_seen_wrong_boxes"])
                cells = f"{fmt(g['sq_error']):>9} {fmt(g['accuracy']):>9} {wrong:>14}"
                print(f"{name:<20} {g['count']:>7} {cells}")


if __name__ == "__main__":
    main()
