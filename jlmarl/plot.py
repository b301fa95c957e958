"""python -m jlmarl.plot RUN_DIR [RUN_DIR ...] [metric=test_win_rate] [out=PATH]

Learning curves: x = env steps, the mean over seeds with a 95% bootstrap
confidence interval, one labelled line per run (algo/env). Seeds log at slightly
different env steps (episodes differ in length), so each seed's curve is
interpolated onto a common grid that stops at the shortest seed's last point.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from jlmarl.core.metrics_log import read_run

BOOTSTRAP_SAMPLES = 2000


class PlotError(ValueError):
    pass


def bootstrap_ci(values: np.ndarray, level: float = 0.95, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of the mean over axis 0 (seeds) of values [S, X]."""
    values = np.asarray(values, np.float64)
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n))
    means = values[idx].mean(axis=1)  # [B, X]
    tail = (1 - level) / 2 * 100
    return np.percentile(means, tail, axis=0), np.percentile(means, 100 - tail, axis=0)


def run_label(run_dir: Path) -> str:
    config = Path(run_dir) / "config.yaml"
    if not config.is_file():
        return Path(run_dir).name
    cfg = OmegaConf.load(config)
    return f"{cfg.algo.name}/{cfg.env.name}"


def run_curves(
    run_dir: Path, metric: str, points: int = 200, runs: list[list[dict]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(steps [X], values [S, X]) of one run: every seed interpolated onto one grid.
    `runs`: the run's records if already read (read_run warns once per bad line)."""
    runs = read_run(run_dir) if runs is None else runs
    seeds = [[r for r in records if isinstance(r.get(metric), float | int)] for records in runs]
    seeds = [s for s in seeds if s]
    if not seeds:
        available = sorted({k for records in runs for r in records for k in r})
        raise PlotError(
            f"{run_dir}: no seed logged metric={metric}; available: {', '.join(available) or 'none'}"
        )
    end = min(s[-1]["env_steps"] for s in seeds)
    grid = np.unique(np.concatenate([[r["env_steps"] for r in s if r["env_steps"] <= end] for s in seeds]))
    if grid.size > points:
        grid = np.linspace(grid[0], grid[-1], points)
    values = np.stack(
        [np.interp(grid, [r["env_steps"] for r in s], [float(r[metric]) for r in s]) for s in seeds]
    )
    return grid, values


def default_metric(run_dirs: list[Path], runs: list[list[list[dict]]] | None = None) -> str:
    """test_win_rate where every run logs it, else test_return_mean."""
    runs = [read_run(d) for d in run_dirs] if runs is None else runs
    for records in (r for run in runs for r in run):
        if records and "test_win_rate" not in records[0]:
            return "test_return_mean"
    return "test_win_rate"


def plot_runs(
    run_dirs: list[Path], metric: str, out: Path, runs: list[list[list[dict]]] | None = None
) -> tuple[Path, list[str]]:
    """Writes the PNG; returns its path and the legend labels (one per run)."""
    runs = [read_run(d) for d in run_dirs] if runs is None else runs
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = []
    for run_dir, records in zip(run_dirs, runs, strict=True):
        steps, values = run_curves(run_dir, metric, runs=records)
        mean = values.mean(axis=0)
        label = f"{run_label(run_dir)} ({values.shape[0]} seed{'s' if values.shape[0] > 1 else ''})"
        (line,) = ax.plot(steps, mean, label=label)
        labels.append(label)
        if values.shape[0] > 1:
            low, high = bootstrap_ci(values)
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("env steps")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean and 95% bootstrap CI over seeds")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out, labels


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    options = dict(a.split("=", 1) for a in argv if "=" in a)
    run_dirs = [Path(a) for a in argv if "=" not in a]
    try:
        unknown = set(options) - {"metric", "out"}
        if unknown:
            raise PlotError(
                f"unknown option(s) {', '.join(sorted(unknown))}; valid: metric=<name> out=<png path>"
            )
        if not run_dirs:
            raise PlotError("give at least one run folder: python -m jlmarl.plot runs/<a> [runs/<b> ...]")
        for d in run_dirs:
            if not (d / "metrics").is_dir():
                raise PlotError(f"{d} is not a run folder (no metrics/ inside)")
        runs = [read_run(d) for d in run_dirs]  # bad lines are skipped with a warning each
        metric = options.get("metric") or default_metric(run_dirs, runs)
        out = Path(options.get("out") or (run_dirs[0] / "curves.png" if len(run_dirs) == 1 else "curves.png"))
        print(f"wrote {plot_runs(run_dirs, metric, out, runs)[0]}")
    except PlotError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; no plot written", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
