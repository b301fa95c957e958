"""Learning benchmark: test win rate against env steps and wall-clock time.

    python benchmarks/learning.py [--algos qmix vdn] [--env smax_3m] [--seeds 3]
                                  [--steps 1000000] [--json PATH] [key=value ...]

--algos takes algorithm names and the named variants of VARIANTS (an algorithm plus
overrides), e.g. LIMARL against QMIX at equal env steps, and LIMARL's ablations:

    python benchmarks/learning.py --algos limarl qmix --env smax_3m
    python benchmarks/learning.py --algos limarl qmix --env smax_2s3z
    python benchmarks/learning.py --env smax_3m --algos limarl limarl_no_align \
        limarl_no_rec limarl_no_kl limarl_oracle

LSF-SAC against MASAC and QMIX (predator_prey has no win: use its return), and its ablations:

    python benchmarks/learning.py --algos lsf_sac masac qmix --env predator_prey \
        --metric test_return_mean --threshold 20
    python benchmarks/learning.py --algos lsf_sac masac qmix --env smax_3m
    python benchmarks/learning.py --env smax_3m --algos lsf_sac lsf_sac_fixed_alpha lsf_sac_double_q

VDFD against IQL at equal env steps, beside the QMIX and VDN runs of the PQN benchmark
(1M steps, read up to --steps), and its ablations (MMSA's: mmsa_no_wm, mmsa_no_sale, ...):

    python benchmarks/learning.py --algos vdfd iql --env smax_3m --steps 500000 --baseline qmix \
        --from-runs runs/pqn_bench/algo-qmix__env-smax_3m runs/pqn_bench/algo-vdn__env-smax_3m
    python benchmarks/learning.py --env smax_3m --steps 500000 --seeds 1 --algos vdfd_no_ac \
        vdfd_no_af vdfd_no_st vdf_sv vdf_post

Trains each algorithm through the normal CLI path (all seeds vmapped in one run in
<run-root>/<algo>_<env>_<steps>, default hyperparameters unless overridden by trailing
key=value; the same command continues an interrupted run from its checkpoint), and with
--from-runs DIR ... also summarises runs that already exist (finished or interrupted; cut
after their first evaluation past --steps; runs given the same --labels name are pooled
into one entry, their seeds side by side), and with --from-json FILE ... the entries of
an earlier run of this script (for runs whose folders are gone), listed first. Prints, per
algorithm, the mean test win rate over seeds at every 100k env steps, the final one, the
mean of each seed's last three evaluations with its 95% Student-t interval over seeds (with
--baseline, each one's difference to the baseline's, 95% Welch interval), when the mean
first reached 0.9 (env steps and wall-clock seconds), and writes the per-seed curves as JSON. Evaluation
points are matched across seeds by index (every seed evaluates at its first chunk past
each multiple of test_interval).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import ab
import numpy as np
from omegaconf import OmegaConf
from scipy import stats

from jlmarl.config import load_config
from jlmarl.train import run

ROOT = Path(__file__).resolve().parents[1]

# Named variants: (algorithm, overrides). Plain algorithm names need no entry.
VARIANTS = {
    "limarl_no_align": ("limarl", ["limarl.align=false"]),
    "limarl_no_rec": ("limarl", ["limarl.rec=false"]),
    "limarl_no_kl": ("limarl", ["limarl.kl=false"]),
    "limarl_oracle": ("limarl", ["limarl.oracle=true"]),
    "limarl_pretrain_only": ("limarl", ["limarl.delta=inf"]),
    # LSF-SAC's ablations (seed 003, VI.E); `masac` (no messages) is a plain algorithm.
    "lsf_sac_fixed_alpha": ("lsf_sac", ["lsf_sac.fixed_alpha=1.0"]),
    "lsf_sac_double_q": ("lsf_sac", ["lsf_sac.double_q=true"]),
    "masac_double_q": ("masac", ["lsf_sac.double_q=true"]),
    "lsf_sac_max_target": ("lsf_sac", ["lsf_sac.target=max"]),
    # VDFD's ablations (seed 004, section 5.3).
    "vdfd_no_ac": ("vdfd", ["vdfd.mask_ac=0"]),
    "vdfd_no_af": ("vdfd", ["vdfd.mask_af=0"]),
    "vdfd_no_st": ("vdfd", ["vdfd.mask_st=0"]),
    "vdf_sv": ("vdfd", ["vdfd.posterior=mlp"]),
    "vdf_post": ("vdfd", ["vdfd.prior=false"]),
    # every mask at 0: the mixer reads [s_t, 0]: QMIX on VDFD's own base settings (batch 32,
    # one-step TD, RMSProp), the like-for-like baseline for VDFD's gain
    "vdfd_masks_off": ("vdfd", ["vdfd.mask_ac=0", "vdfd.mask_af=0", "vdfd.mask_st=0"]),
    # MMSA's ablations (seed 001, Table 8).
    "mmsa_no_wm": ("mmsa", ["mmsa.world_model=false"]),
    "mmsa_no_sale": ("mmsa", ["mmsa.sale=false"]),
    "mmsa_no_klb": ("mmsa", ["mmsa.kl_balance=false"]),
    "mmsa_no_gs": ("mmsa", ["mmsa.global_state=false"]),
}


def logged_lines(run_dir: Path, seed: int) -> list[dict]:
    """Every line a run logged for one seed (training and evaluation), in order."""
    return [json.loads(x) for x in (run_dir / "metrics" / f"seed_{seed}.jsonl").read_text().splitlines()]


def seed_lines(run_dirs: list[Path]) -> list[list[dict]]:
    """Every seed's logged lines, the seeds of each run in turn (runs pooled under one label)."""
    return [logged_lines(d, k) for d in run_dirs for k in range(OmegaConf.load(d / "config.yaml").num_seeds)]


def curves(run_dir: Path, n_seeds: int, metric: str, until: int | None = None) -> dict:
    """Per-seed evaluations (lines with `metric`) of one run's first n_seeds seeds; see
    seed_curves."""
    return seed_curves([logged_lines(run_dir, k) for k in range(n_seeds)], metric, until)


def seed_curves(seeds: list[list[dict]], metric: str, until: int | None = None) -> dict:
    """Per-seed evaluations (lines with `metric`) from each seed's logged lines; with `until`,
    cut after each seed's first evaluation at or past `until` env steps (a longer run at a
    shorter budget)."""
    per_seed = []
    for lines in seeds:
        lines = [x for x in lines if x.get(metric) is not None]
        if until is not None:
            past = [i for i, x in enumerate(lines) if x["env_steps"] >= until]
            lines = lines[: past[0] + 1] if past else lines
        per_seed.append({key: [x.get(key) for x in lines] for key in ("env_steps", "wall_s", metric)})
    n = min(len(s["env_steps"]) for s in per_seed)
    steps = np.mean([s["env_steps"][:n] for s in per_seed], axis=0)
    wall = np.max([s["wall_s"][:n] for s in per_seed], axis=0)
    values = np.array([s[metric][:n] for s in per_seed], dtype=float)
    return {
        "env_steps": steps.tolist(),
        "wall_s": wall.tolist(),
        "mean": values.mean(0).tolist(),
        "values": values.tolist(),
        "per_seed": per_seed,
    }


def final_train_metrics(
    seeds: list[list[dict]], prefix: tuple[str, ...], until: int | None, last: int = 3
) -> dict:
    """Training metrics whose names start with one of `prefix` (e.g. wm_: the world-model
    diagnostics): the mean over seeds of each seed's last `last` logged lines at or before
    `until` env steps (when given). seeds: each seed's logged lines."""
    per_seed = []
    for lines in seeds:
        lines = [x for x in lines if any(key.startswith(prefix) for key in x)]
        if until is not None:
            lines = [x for x in lines if x["env_steps"] <= until]
        per_seed.append(lines[-last:])
    keys = sorted({key for lines in per_seed for x in lines for key in x if key.startswith(prefix)})
    return {
        key: float(np.mean([np.mean([x[key] for x in lines if key in x]) for lines in per_seed]))
        for key in keys
    }


def first_reach(curve: dict, threshold: float):
    for steps, wall, value in zip(curve["env_steps"], curve["wall_s"], curve["mean"], strict=True):
        if value >= threshold:
            return int(steps), float(wall)
    return None, None


def seed_finals(curve: dict, last: int = 3) -> np.ndarray:
    """Each seed's mean of its last `last` evaluations."""
    return np.array([np.mean(s[-last:]) for s in np.array(curve["values"])])


def difference_ci(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """mean(a) - mean(b) with its 95% Welch interval (unequal variances, few seeds)."""
    interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return float(a.mean() - b.mean()), float(interval.low), float(interval.high)


def final_ci(curve: dict, last: int = 3) -> tuple[float, float, float]:
    """Mean over seeds of each seed's mean of its last `last` evaluations, and the 95%
    Student-t interval over seeds (seeds are few: the t quantile, not 1.96)."""
    finals = seed_finals(curve, last)
    mean = float(finals.mean())
    if len(finals) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(finals) - 1) * finals.std(ddof=1) / np.sqrt(len(finals))
    return mean, mean - half, mean + half


def summarise(run_dirs: list[Path], args, wall_s, compile_s, label: str | None = None) -> dict:
    """One entry of the results: a run, or runs pooled under one label (their seeds side by
    side; they must be on the same env)."""
    cfgs = [OmegaConf.load(d / "config.yaml") for d in run_dirs]
    cfg = cfgs[0]
    envs = {c.env.name for c in cfgs}
    if len(envs) > 1:
        envs_text = ", ".join(sorted(envs))
        raise SystemExit(f"--labels pools runs on different envs ({envs_text}): give them their own labels")
    seeds = seed_lines(run_dirs)
    curve = seed_curves(seeds, args.metric, until=args.steps)
    reach_steps, reach_wall = first_reach(curve, args.threshold)
    final, low, high = final_ci(curve)
    return {
        "algo": label or cfg.algo.name,
        # what wrote this entry (an entry read with --from-json keeps its own); a run it
        # summarises with --from-runs was trained by the command in its results README
        "command": "python benchmarks/learning.py " + shlex.join(sys.argv[1:]),
        "commit": ab.commit(ROOT),
        "env": cfg.env.name,
        "seeds": len(seeds),
        "total_steps": cfg.total_steps if len(cfgs) == 1 else [c.total_steps for c in cfgs],
        "num_envs": cfg.num_envs,
        "run_dir": str(run_dirs[0]) if len(run_dirs) == 1 else [str(d) for d in run_dirs],
        "finished": wall_s is not None,
        "wall_s": wall_s if wall_s is not None else curve["wall_s"][-1],
        "compile_s": compile_s,
        "last_env_steps": curve["env_steps"][-1],
        "final_mean": curve["mean"][-1],
        "final_last3": final,
        "final_last3_ci95": [low, high],
        f"steps_to_{args.threshold}": reach_steps,
        f"wall_s_to_{args.threshold}": reach_wall,
        "curve": curve,
    } | ({"train_metrics": final_train_metrics(seeds, tuple(args.train_metrics), args.steps)}
         if args.train_metrics else {})  # fmt: skip


def write(results: list, path: Path | None) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algos", nargs="+", default=None, help="default: qmix vdn (none with --from-runs)")
    parser.add_argument("--env", default="smax_3m")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--metric", default="test_win_rate")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--run-root", type=Path, default=Path("runs/learning"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--from-runs", nargs="+", type=Path, default=None, help="summarise these run dirs")
    parser.add_argument(
        "--from-json", nargs="+", type=Path, default=None, help="add an earlier --json's entries"
    )
    parser.add_argument("--baseline", default=None, help="last-3 differences to this algorithm")
    parser.add_argument(
        "--labels",
        nargs="+",
        default=None,
        help="names for --from-runs (default: each run's algo); runs given the same name are pooled",
    )
    parser.add_argument(
        "--train-metrics",
        nargs="+",
        default=None,
        help="also report training metrics with these prefixes (e.g. wm_): last 3 lines",
    )
    parser.add_argument("overrides", nargs="*", help="extra key=value config overrides")
    args = parser.parse_args()

    if args.algos is None:
        args.algos = [] if args.from_runs or args.from_json else ["qmix", "vdn"]
    # read before anything is written: --json may name one of these files
    results = [entry for path in args.from_json or [] for entry in json.loads(path.read_text())]
    for algo in args.algos:
        run_dir = args.run_root / f"{algo}_{args.env}_{args.steps}"
        base, variant_overrides = VARIANTS.get(algo, (algo, []))
        if (run_dir / "checkpoints").is_dir():  # the same command continues an interrupted run
            cfg = load_config(["resume=true", f"run_dir={run_dir}", "progress=false"])
        else:
            cfg = load_config(
                [
                    f"algo={base}",
                    *variant_overrides,
                    f"env={args.env}",
                    f"num_seeds={args.seeds}",
                    f"total_steps={args.steps}",
                    "test_interval=20000",
                    "test_episodes=32",
                    "progress=false",
                    f"run_dir={run_dir}",
                    *args.overrides,
                ]
            )
        summary = run(cfg)
        results.append(summarise([run_dir], args, summary["wall_s"], summary["compile_s"], label=algo))
        write(results, args.json)
    labels = args.labels or []
    if args.from_runs and len(labels) not in (0, len(args.from_runs)):
        parser.error(f"--labels names {len(labels)} runs and --from-runs gives {len(args.from_runs)}")
    pooled: dict[str, list[Path]] = {}  # runs given the same label: one entry, seeds side by side
    for i, run_dir in enumerate(args.from_runs or []):
        pooled.setdefault(labels[i] if labels else str(i), []).append(run_dir)
    for name, run_dirs in pooled.items():
        results.append(summarise(run_dirs, args, None, None, label=name if labels else None))
        write(results, args.json)

    print(f"\n{args.metric}, mean over seeds (env steps in thousands)")
    longest = max(r["last_env_steps"] for r in results)
    marks = [m for m in range(100_000, args.steps + 1, 100_000) if m <= longest]
    print(
        f"{'algo':<21}"
        + "".join(f"{m // 1000:>7}k" for m in marks)
        + f"{'final':>8} {'last-3 [95% CI]':>22} {'steps to ' + str(args.threshold):>14} {'wall s to':>10}"
        + f"{'wall s':>8}"
    )
    for r in results:
        c = r["curve"]
        row = [np.interp(m, c["env_steps"], c["mean"]) for m in marks]
        reach, reach_wall = r.get(f"steps_to_{args.threshold}"), r.get(f"wall_s_to_{args.threshold}")
        reached = (str(reach), f"{reach_wall:.0f}") if reach else ("never", "-")
        low, high = r["final_last3_ci95"]
        ci = f"{r['final_last3']:.3f} [{low:.3f}, {high:.3f}]"
        print(
            f"{r['algo']:<21}"
            + "".join(f"{v:>8.3f}" for v in row)
            + f"{r['final_mean']:>8.3f} {ci:>22} {reached[0]:>14} {reached[1]:>10} {r['wall_s']:>8.0f}"
        )
    if args.train_metrics:
        keys = sorted({k for r in results for k in r.get("train_metrics", {})})
        prefixes = " ".join(p + "*" for p in args.train_metrics)
        print(f"\ntraining metrics {prefixes}: mean over seeds of each seed's last 3 logged lines")
        print(f"{'metric':<21}" + "".join(f"{r['algo'][:20]:>21}" for r in results))
        for k in keys:
            values = [r.get("train_metrics", {}).get(k, float("nan")) for r in results]
            print(f"{k:<21}" + "".join(f"{v:>21.3f}" for v in values))
    base = [r for r in results if r["algo"] == args.baseline]
    if base and len(base[0]["curve"]["values"]) > 1:
        print(f"\nlast-3 mean minus {args.baseline}'s, 95% Welch interval over seeds")
        for r in results:
            if r is not base[0] and len(r["curve"]["values"]) > 1:
                diff, low, high = difference_ci(seed_finals(r["curve"]), seed_finals(base[0]["curve"]))
                r[f"minus_{args.baseline}_ci95"] = [diff, low, high]
                print(f"{r['algo']:<21}{diff:>8.3f} [{low:.3f}, {high:.3f}]")
        write(results, args.json)


if __name__ == "__main__":
    main()
