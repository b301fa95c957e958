"""The comparison report: statistics of a Comparison written as report.json, report.md,
four PNGs and one curve per task (drawn with rliable's plotting) and marl_eval.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jlmarl.analysis import stats
from jlmarl.analysis.runs import Comparison, compare_runs, load_run, marl_eval_json

AGGREGATE_TITLES = {"iqm": "IQM", "median": "Median", "mean": "Mean", "optimality_gap": "Optimality gap"}
FIGURES = {
    "aggregate": "aggregate.png",
    "probability_of_improvement": "probability_of_improvement.png",
    "performance_profile": "performance_profile.png",
    "sample_efficiency": "sample_efficiency.png",
}
PAIR = "\t"  # joins an algorithm pair for rliable's plot; algorithm names hold no tabs


def _est(e: stats.Estimate) -> dict:
    return {
        "estimate": float(np.ravel(e.value)[0]),
        "ci": [float(np.ravel(e.low)[0]), float(np.ravel(e.high)[0])],
    }


def _fmt(e: dict) -> str:
    return f"{e['estimate']:.3f} [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]"


def compute(comparison: Comparison, reps: int = 2000, seed: int = 0) -> dict:
    """Every statistic of the report, as JSON-ready data."""
    c = comparison
    final = c.final()
    raw_final = c.final(c.raw)
    low = min(0.0, *(float(v.min()) for v in final.values()))
    high = max(1.0, *(float(v.max()) for v in final.values()))
    taus = np.linspace(low, high, 101)
    aggregates = stats.aggregate_estimates(final, reps, seed)
    improvement = stats.probability_of_improvement(final, reps, seed)
    profiles = stats.performance_profiles(final, taus, reps, seed)
    curves = stats.iqm_curves(c.curves, reps, seed)
    per_task = stats.task_means(final, reps, seed)
    task_curves = {  # the logged metric per task: IQM over seeds at each evaluation
        t: stats.iqm_curves({a: c.raw[a][:, [j]] for a in c.algos}, reps, seed) for j, t in enumerate(c.tasks)
    }
    return {
        "runs": [
            {
                "path": str(r.path),
                "algo": r.algo,
                "task": r.task,
                "seeds": r.seeds,
                "test_interval": r.test_interval,
            }
            for r in c.runs
        ],
        "algorithms": c.algos,
        "tasks": c.tasks,
        "env_steps": c.steps.tolist(),
        "final_score": {
            "definition": f"each seed's mean normalised score over its last {c.last} evaluation(s)",
            "last_evaluations": c.last,
            "env_steps": c.steps[-c.last :].tolist(),
        },
        "normalisation": {
            t: {"metric": n.metric, "kind": n.kind, "min": n.low, "max": n.high}
            for t, n in c.normalisation.items()
        },
        "bootstrap": {
            "method": "rliable stratified bootstrap, percentile",
            "reps": reps,
            "confidence": 0.95,
            "seed": seed,
        },
        "aggregate": {a: {name: _est(e) for name, e in aggregates[a].items()} for a in c.algos},
        "probability_of_improvement": {
            x: {y: _est(improvement[x, y]) for y in c.algos if y != x} for x in c.algos
        },
        "performance_profile": {
            "tau": taus.tolist(),
            **{
                a: {
                    "fraction": profiles[a].value.tolist(),
                    "ci": [profiles[a].low.tolist(), profiles[a].high.tolist()],
                }
                for a in c.algos
            },
        },
        "sample_efficiency_iqm": {
            a: {"estimate": curves[a].value.tolist(), "ci": [curves[a].low.tolist(), curves[a].high.tolist()]}
            for a in c.algos
        },
        "per_task_curves": {
            t: {
                a: {"estimate": e.value.tolist(), "ci": [e.low.tolist(), e.high.tolist()]}
                for a, e in task_curves[t].items()
            }
            for t in c.tasks
        },
        "per_task": {
            t: {
                a: {
                    "seeds": int(final[a].shape[0]),
                    "metric": c.normalisation[t].metric,
                    "final_metric_mean": float(raw_final[a][:, j].mean()),
                    "normalised": _est(per_task[a][j]),
                    "normalised_per_seed": final[a][:, j].tolist(),
                }
                for a in c.algos
            }
            for j, t in enumerate(c.tasks)
        },
        "notes": list(c.notes),
    }


def draw(report: dict, out: Path) -> list[Path]:
    """The four figures, from the computed report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    algos = report["algorithms"]
    written = []

    def save(fig, name):
        path = out / FIGURES.get(name, name)  # one of FIGURES, or a file name
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    agg = report["aggregate"]
    names = list(AGGREGATE_TITLES)
    fig, _ = plot_utils.plot_interval_estimates(
        {a: np.array([agg[a][n]["estimate"] for n in names]) for a in algos},
        {a: np.array([agg[a][n]["ci"] for n in names]).T for a in algos},
        metric_names=[AGGREGATE_TITLES[n] for n in names],
        algorithms=algos,
        xlabel="normalised final score (95% stratified bootstrap CI)",
        row_height=max(0.37, 1.2 / len(algos)),
        # rliable places the label at a fixed fraction of the height: keep it below the ticks
        xlabel_y_coordinate=-0.5 / max(0.37 * len(algos), 1.2),
    )
    save(fig, "aggregate")

    poi = report["probability_of_improvement"]
    # Each pair once, the algorithm more likely to improve on the other as X.
    pairs = [
        (x, y) if poi[x][y]["estimate"] >= 0.5 else (y, x)
        for i, x in enumerate(algos)
        for y in algos[i + 1 :]
    ]
    if pairs:
        fig, ax = plt.subplots(figsize=(5, 0.6 + 0.5 * len(pairs)))
        plot_utils.plot_probability_of_improvement(
            {f"{x}{PAIR}{y}": poi[x][y]["estimate"] for x, y in pairs},
            {f"{x}{PAIR}{y}": np.array(poi[x][y]["ci"]) for x, y in pairs},
            pair_separator=PAIR,
            ax=ax,
            xticks=[0, 0.25, 0.5, 0.75, 1],
        )
        ax.set_xlim(0, 1)
        save(fig, "probability_of_improvement")
    else:  # one algorithm: no pairs, and no figure left over from an earlier report in out
        (out / FIGURES["probability_of_improvement"]).unlink(missing_ok=True)

    profile = report["performance_profile"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(
        {a: np.array(profile[a]["fraction"]) for a in algos},
        np.array(profile["tau"]),
        performance_profile_cis={a: np.array(profile[a]["ci"]) for a in algos},
        ax=ax,
        xlabel=r"normalised final score $\tau$",
        ylabel=r"fraction of runs with score $> \tau$",
        labelsize="large",
        ticklabelsize="large",
        legend=True,
    )
    save(fig, "performance_profile")

    def curve(estimates: dict, ylabel: str):
        """Estimate and CI of every algorithm against env steps (rliable's sample-efficiency plot)."""
        fig, ax = plt.subplots(figsize=(7, 4.5))
        plot_utils.plot_sample_efficiency_curve(
            np.array(report["env_steps"]),
            {a: np.array(estimates[a]["estimate"]) for a in algos},
            {a: np.array(estimates[a]["ci"]) for a in algos},
            algorithms=algos,
            ax=ax,
            xlabel="env steps",
            ylabel=ylabel,
            marker="o" if len(report["env_steps"]) <= 30 else "",
            labelsize="large",
            ticklabelsize="large",
        )
        ax.legend()
        return fig, ax

    fig, _ = curve(report["sample_efficiency_iqm"], "IQM normalised score")
    save(fig, "sample_efficiency")

    for task, per_algo in report["per_task_curves"].items():
        fig, ax = curve(per_algo, f"{report['per_task'][task][algos[0]]['metric']} (IQM over seeds)")
        ax.set_title(task)
        save(fig, task_figure(task))
    return written


def task_figure(task: str) -> str:
    return f"curve_{task}.png"


def markdown(report: dict) -> str:
    algos, tasks = report["algorithms"], report["tasks"]
    b, f = report["bootstrap"], report["final_score"]
    lines = [
        f"# Comparison of {len(algos)} algorithm(s) on {len(tasks)} task(s)",
        "",
        f"Final score: {f['definition']} (env steps {', '.join(map(str, f['env_steps']))}). "
        f"Brackets: {b['confidence']:.0%} CIs from rliable's stratified bootstrap over seeds "
        f"({b['reps']} resamples, seed {b['seed']}).",
        "",
        "## Runs",
        "",
        "| run | algorithm | task | seeds | test_interval |",
        "|---|---|---|---|---|",
        *(
            f"| `{r['path']}` | {r['algo']} | {r['task']} | {', '.join(map(str, r['seeds']))} "
            f"| {r['test_interval']} |"
            for r in report["runs"]
        ),
        "",
        "## Normalisation per task",
        "",
        "| task | metric | normalised by |",
        "|---|---|---|",
    ]
    how = {
        "win_rate": "win rate as is",
        "min_max": "min–max over every evaluation of every run (min {lo:g}, max {hi:g})",
        "reference": "reference= (min {lo:g}, max {hi:g})",
    }
    for t, n in report["normalisation"].items():
        lines.append(f"| {t} | {n['metric']} | {how[n['kind']].format(lo=n['min'], hi=n['max'])} |")
    lines += [
        "",
        "## Aggregate normalised final score",
        "",
        "| algorithm | IQM | median | mean | optimality gap (lower is better) |",
        "|---|---|---|---|---|",
        *(
            f"| {a} | " + " | ".join(_fmt(report["aggregate"][a][n]) for n in AGGREGATE_TITLES) + " |"
            for a in algos
        ),
        "",
    ]
    if len(algos) > 1:
        poi = report["probability_of_improvement"]
        lines += [
            "## Probability of improvement P(row > column)",
            "",
            "| | " + " | ".join(algos) + " |",
            "|---" * (len(algos) + 1) + "|",
            *(
                f"| {x} | " + " | ".join("–" if x == y else _fmt(poi[x][y]) for y in algos) + " |"
                for x in algos
            ),
            "",
        ]
    lines += ["## Per task", ""]
    for t in tasks:
        cells = report["per_task"][t]
        metric = cells[algos[0]]["metric"]
        lines += [
            f"### {t}",
            "",
            f"| algorithm | seeds | final {metric} (mean) | normalised final score, mean |",
            "|---|---|---|---|",
            *(
                f"| {a} | {cells[a]['seeds']} | {cells[a]['final_metric_mean']:.4g} "
                f"| {_fmt(cells[a]['normalised'])} |"
                for a in algos
            ),
            "",
            f"![{t}: {metric} against env steps]({task_figure(t)})",
            "",
        ]
    lines += ["## Figures", ""]
    titles = {
        "aggregate": "Aggregate final scores",
        "probability_of_improvement": "Probability of improvement",
        "performance_profile": "Performance profiles",
        "sample_efficiency": "IQM against env steps",
    }
    lines += [
        f"![{titles[k]}]({v})"
        for k, v in FIGURES.items()
        if k != "probability_of_improvement" or len(algos) > 1
    ]
    lines += [
        "",
        "## marl-eval",
        "",
        "`marl_eval.json` holds these runs in marl-eval's raw-data format (environment `jlmarl`, "
        "one task per env, metrics `return`, `win_rate` where every task logs it, and `score`, this "
        "report's normalised score; `absolute_metrics` = the final score above). Feed it to marl-eval's "
        '`data_process_pipeline` (`metrics_to_normalize=["return"]`).',
        "",
    ]
    if report["notes"]:
        lines += ["## Notes", "", *(f"- {n}" for n in report["notes"]), ""]
    return "\n".join(lines)


def write_report(comparison: Comparison, out: Path, reps: int = 2000, seed: int = 0) -> dict:
    """Writes report.json, report.md, the PNGs and marl_eval.json into out; returns the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = compute(comparison, reps, seed)
    figures = draw(report, out)
    report["files"] = sorted(p.name for p in figures) + ["marl_eval.json", "report.json", "report.md"]
    (out / "marl_eval.json").write_text(json.dumps(marl_eval_json(comparison), indent=1) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(markdown(report))
    return report


def compare(
    runs: list[tuple[Path, str | None]],
    out: Path,
    reference: dict | None = None,
    last: int | None = None,
    reps: int = 2000,
    seed: int = 0,
    until: int | None = None,
) -> dict:
    """Loads (run folder, algorithm name or None) pairs, checks and normalises them, and writes
    the report into out; raises CompareError when the runs cannot be compared. until: compare
    every run at its first `until` env steps (see load_run)."""
    comparison = compare_runs([load_run(path, name, until) for path, name in runs], reference, last)
    return write_report(comparison, out, reps, seed)
