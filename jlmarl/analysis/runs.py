"""Scores of finished runs, checked to be comparable and normalised per task.

A run folder is one algorithm (`algo.name`, or a name given as `RUN_DIR@name`) on
one task (`env.name`) over several seeds (`metrics/seed_<k>.jsonl`). Each seed's
evaluations go on a grid of env steps: an evaluation's `env_steps` is binned to the
multiple of the run's `test_interval` it was due at, the last one at or below it (the
engine evaluates at the end of the first chunk that passes each multiple: a few steps
late for whole episodes, up to a segment chunk late for PQN's 16,384-step chunks); when
two fall into one bin the later one is kept. An evaluation at or
past `total_steps` is the run's final one and goes in the bin total_steps: seeds vmapped
in one run count env steps apart, so a seed whose episodes run longer passes the budget
earlier and trains on until the slowest seed reaches it (one seed's final evaluation at
1.04M, another's at 1.0M in a 1M-step QMIX run). As in marl-eval,
runs are compared only when every run is on the same grid and every algorithm has
runs on every task; a mismatch is refused with one sentence, never patched up.

Folders of the same algorithm on the same task are pooled as more seeds when their
settings agree (bookkeeping keys aside) and their seeds differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from omegaconf import OmegaConf

from jlmarl.config_schema import leaves
from jlmarl.core.metrics_log import read_run

RETURN = "test_return_mean"
DEFAULT_LAST = 3  # final score: mean of the last 3 evaluations, less noisy than one
WIN_RATE = "test_win_rate"
# Config keys that do not change what a run learns; anything else must agree before
# two folders are pooled. total_steps is left to the evaluation-grid check.
BOOKKEEPING_KEYS = {
    "seed",
    "num_seeds",
    "run_dir",
    "progress",
    "log_interval_s",
    "plot",
    "resume",
    "checkpoint_interval",
    "checkpoint_keep",
    "checkpoint_buffer",
    "logger",
    "wandb",
    "devices",
    "distributed",
    "total_steps",
}


class CompareError(ValueError):
    """A run folder or a set of runs that cannot be compared; one sentence with the fix."""


@dataclass
class Run:
    path: Path
    algo: str
    task: str
    test_interval: int
    seeds: list[int]  # absolute seeds: the config's seed + k
    steps: np.ndarray  # [B] env-step bins
    returns: np.ndarray  # [S, B] test_return_mean
    win_rates: np.ndarray | None  # [S, B] test_win_rate, where the env logs it
    settings: dict = field(repr=False)  # the config without BOOKKEEPING_KEYS
    skipped: list[str] = field(default_factory=list)  # damaged metric lines, as "file:line: why"


@dataclass(frozen=True)
class Normalisation:
    """score = (metric - low) / (high - low); win rates pass through (low 0, high 1)."""

    metric: str  # the logged metric normalised: test_win_rate or test_return_mean
    kind: str  # "win_rate", "min_max" (over every evaluation of every run) or "reference"
    low: float
    high: float

    def apply(self, values: np.ndarray) -> np.ndarray:
        # Every run scored the same at every evaluation (min = max): nothing separates
        # them, so all get 0 rather than a division by zero (noted in the report).
        if self.high == self.low:
            return np.zeros_like(values, dtype=np.float64)
        return (np.asarray(values, np.float64) - self.low) / (self.high - self.low)


@dataclass
class Comparison:
    """Checked, normalised scores of every algorithm on every task."""

    algos: list[str]
    tasks: list[str]
    steps: np.ndarray  # [B] shared evaluation grid (env steps)
    runs: list[Run]
    normalisation: dict[str, Normalisation]  # per task
    raw: dict[str, np.ndarray]  # per algo, [S_a, T, B] the logged metric of each task
    curves: dict[str, np.ndarray]  # per algo, [S_a, T, B] normalised scores
    last: int  # final score = mean of the last `last` evaluations
    notes: list[str]

    def final(self, values: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Per algo, [S_a, T]: each seed's mean over its last `last` evaluations."""
        values = self.curves if values is None else values
        return {algo: v[..., -self.last :].mean(axis=-1) for algo, v in values.items()}


def _span(steps) -> str:
    steps = sorted(steps)
    return f"{steps[0]}..{steps[-1]} ({len(steps)} points)" if len(steps) > 1 else f"{steps[0]} (1 point)"


def load_run(path: Path, name: str | None = None, until: int | None = None) -> Run:
    """One run folder's test returns (and win rates) on its evaluation grid; with `until`,
    read as if its budget had been `until` env steps: its first evaluation at or past
    `until` is its final one and what it learned after that is left out."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        if (path / "report.json").is_file():  # e.g. runs/compare, caught by a runs/* glob
            raise CompareError(f"{path} is a comparison report, not a run folder; leave it out")
        raise CompareError(
            f"{path} is not a run folder (no config.yaml); give folders written by jlmarl.train"
        )
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(path / "config.yaml"), resolve=False)
        algo, task, interval = name or cfg["algo"]["name"], cfg["env"]["name"], int(cfg["test_interval"])
        if interval <= 0:
            raise ValueError
    except Exception:  # unreadable YAML, missing keys, a bad interval: all mean "not one of our runs"
        raise CompareError(
            f"{path}/config.yaml is unreadable or lacks algo.name, env.name or a positive test_interval; "
            "give folders written by jlmarl.train"
        ) from None
    skipped = []
    per_seed = read_run(path, warn=skipped.append)  # damaged lines are skipped; the report names them
    if not per_seed:
        raise CompareError(f"{path} has no metrics/seed_<k>.jsonl; give finished runs")
    total = int(cfg.get("total_steps") or 0)
    if until is not None:
        if total and total < until:
            raise CompareError(
                f"{path} ran {total} env steps, fewer than steps={until}; lower steps or leave the run out"
            )
        total = until
    grids = []
    for k, records in enumerate(per_seed):
        grid = {}
        for record in records:
            if RETURN not in record:
                continue
            value = float(record[RETURN])
            if not math.isfinite(value):
                raise CompareError(
                    f"{path} seed {k} logged {RETURN}={record[RETURN]} at env step {record['env_steps']}; "
                    "a diverged run has no score, leave it out"
                )
            # The multiple of test_interval it was due at (past the budget: the budget's bin);
            # a later evaluation replaces an earlier one.
            at = int(record["env_steps"]) // interval * interval
            past = bool(total) and record["env_steps"] >= total
            if past and until is not None and total in grid:
                continue  # cut at `until`: the run trained on past it
            grid[total if past else at] = record
        if not grid:
            raise CompareError(f"{path} seed {k} has no evaluation ({RETURN}) yet; give finished runs")
        grids.append(grid)
    for k, grid in enumerate(grids[1:], start=1):
        if set(grid) != set(grids[0]):
            step = min(set(grid) ^ set(grids[0]))
            has, lacks = (k, 0) if step in grid else (0, k)
            raise CompareError(
                f"{path}: seed {has} was evaluated near env step {step} but seed {lacks} was not; "
                "compare seeds that ran to the same length"
            )
    steps = np.array(sorted(grids[0]))
    returns = np.array([[float(grid[s][RETURN]) for s in steps] for grid in grids])
    has_win = all(WIN_RATE in grid[s] for grid in grids for s in steps)
    win_rates = np.array([[float(grid[s][WIN_RATE]) for s in steps] for grid in grids]) if has_win else None
    seed0 = int(cfg.get("seed", 0))
    settings = {k: v for k, v in cfg.items() if k not in BOOKKEEPING_KEYS}
    return Run(
        path,
        algo,
        task,
        interval,
        [seed0 + k for k in range(len(grids))],
        steps,
        returns,
        win_rates,
        settings,
        skipped,
    )


def parse_reference(text: str) -> dict[str, tuple[float, float]]:
    """Per-task (min, max) returns: a YAML/JSON file {task: [min, max]} or {task: {min:, max:}},
    or inline `task:min:max[,task:min:max]`."""
    if Path(text).is_file():
        try:
            raw = yaml.safe_load(Path(text).read_text())
        except yaml.YAMLError as e:
            raise CompareError(
                f"reference file {text} is not valid YAML/JSON ({e.__class__.__name__})"
            ) from None
        if not isinstance(raw, dict):
            raise CompareError(f"reference file {text} must map each task to [min, max] or {{min: , max: }}")
        items = list(raw.items())
    else:
        items = []
        for part in filter(None, text.split(",")):
            fields = part.split(":")
            if len(fields) != 3:
                raise CompareError(
                    f"reference={text!r}: {part!r} is neither a file nor task:min:max "
                    "(e.g. reference=smax_3m:0:20,oracle:-1:1)"
                )
            items.append((fields[0], fields[1:]))
    reference = {}
    for task, bounds in items:
        if isinstance(bounds, dict):
            bounds = [bounds.get("min"), bounds.get("max")]
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise CompareError(
                f"reference for {task} must be two numbers, min and max; got {bounds!r}"
            ) from None
        if not high > low:
            raise CompareError(f"reference for {task} needs max > min; got min={low}, max={high}")
        reference[str(task)] = (low, high)
    return reference


def _check_same_grid(runs: list[Run]) -> None:
    first = runs[0]
    for run in runs[1:]:
        if run.test_interval != first.test_interval:
            raise CompareError(
                f"{run.path} evaluates every {run.test_interval} env steps but {first.path} every "
                f"{first.test_interval}; compare runs trained with the same test_interval"
            )
        if not np.array_equal(run.steps, first.steps):
            only_run = set(run.steps.tolist()) - set(first.steps.tolist())
            step, has, lacks = (
                (min(only_run), run, first)
                if only_run
                else (min(set(first.steps.tolist()) - set(run.steps.tolist())), first, run)
            )
            raise CompareError(
                f"{has.path} was evaluated near env step {step} but {lacks.path} was not (its evaluations: "
                f"{_span(lacks.steps.tolist())}); compare runs of the same total_steps and test_interval"
            )


def _check_poolable(runs: list[Run]) -> None:
    first = runs[0]
    for run in runs[1:]:
        ours, theirs = leaves(first.settings), leaves(run.settings)
        differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        if differ:
            key = differ[0]
            raise CompareError(
                f"{first.path} and {run.path} are both {run.algo} on {run.task} but differ in {key} "
                f"({ours.get(key)} vs {theirs.get(key)}); name one apart as {run.path}@<name>"
            )
        shared = sorted(set(first.seeds) & set(run.seeds))
        if shared:
            raise CompareError(
                f"{first.path} and {run.path} both hold seed {shared[0]} of {run.algo} on {run.task}; "
                "pool only runs with different seeds"
            )


def compare_runs(runs: list[Run], reference: dict | None = None, last: int | None = None) -> Comparison:
    """Checks the runs share tasks and evaluation points, pools folders of one algorithm on
    one task, and normalises per task. last=None: the last DEFAULT_LAST evaluations, or all
    the runs have if fewer."""
    if not runs:
        raise CompareError("give at least one run folder")
    paths = [r.path.resolve() for r in runs]
    twice = next((r.path for r, p in zip(runs, paths, strict=True) if paths.count(p) > 1), None)
    if twice is not None:
        raise CompareError(f"{twice} is given twice; give each run folder once")
    reference = reference or {}
    _check_same_grid(runs)
    algos = list(dict.fromkeys(run.algo for run in runs))
    tasks = list(dict.fromkeys(run.task for run in runs))
    cells = {(a, t): [r for r in runs if r.algo == a and r.task == t] for a in algos for t in tasks}
    for (algo, task), pooled in cells.items():
        if not pooled:
            raise CompareError(
                f"{algo} has no run on {task} (tasks: {', '.join(tasks)}); "
                "give every algorithm a run on every task"
            )
        _check_poolable(pooled)
    for algo in algos:
        counts = {t: sum(len(r.seeds) for r in cells[algo, t]) for t in tasks}
        if len(set(counts.values())) > 1:
            (t0, n0), (t1, n1) = (f(counts.items(), key=lambda kv: kv[1]) for f in (min, max))
            raise CompareError(
                f"{algo} has {n0} seed{'s' * (n0 != 1)} on {t0} but {n1} on {t1}; "
                "give an algorithm the same number of seeds on every task"
            )
    unknown = sorted(set(reference) - set(tasks))
    if unknown:
        raise CompareError(f"reference names task {unknown[0]}, which no run has (tasks: {', '.join(tasks)})")
    steps = runs[0].steps
    last = min(DEFAULT_LAST, len(steps)) if last is None else last
    if not 1 <= last <= len(steps):
        raise CompareError(f"last={last} must be between 1 and the {len(steps)} evaluations the runs share")

    skipped = [line for r in runs for line in r.skipped]
    notes = [f"skipped damaged metric line {line}" for line in skipped[:5]]
    if len(skipped) > 5:
        notes.append(f"... and {len(skipped) - 5} more damaged metric lines")
    normalisation = {}
    for task in tasks:
        on_task = [r for r in runs if r.task == task]
        if task in reference:
            normalisation[task] = Normalisation(RETURN, "reference", *reference[task])
        elif all(r.win_rates is not None for r in on_task):
            normalisation[task] = Normalisation(WIN_RATE, "win_rate", 0.0, 1.0)
        else:
            values = np.concatenate([r.returns.ravel() for r in on_task])
            normalisation[task] = Normalisation(RETURN, "min_max", float(values.min()), float(values.max()))
            if values.min() == values.max():
                notes.append(
                    f"every run on {task} returned {values.min():g} at every evaluation: "
                    "its scores are all 0; give reference= to score it"
                )

    def logged(run: Run, task: str) -> np.ndarray:
        return run.win_rates if normalisation[task].metric == WIN_RATE else run.returns

    raw = {
        algo: np.stack(
            [np.concatenate([logged(r, task) for r in cells[algo, task]]) for task in tasks], axis=1
        )  # [S, T, B]
        for algo in algos
    }
    curves = {
        algo: np.stack([normalisation[t].apply(raw[algo][:, j]) for j, t in enumerate(tasks)], axis=1)
        for algo in algos
    }
    seeds = {len(v) for v in curves.values()}
    if len(seeds) > 1:
        notes.append(
            "algorithms have different numbers of seeds: rliable handles that, marl-eval's tools need "
            "the same number for every algorithm"
        )
    return Comparison(algos, tasks, steps, runs, normalisation, raw, curves, last, notes)


MARL_EVAL_ENV = "jlmarl"


def marl_eval_json(comparison: Comparison) -> dict:
    """marl-eval's raw-data format: {env: {task: {algo: {run_k: {step_i: {step_count, metric: [v]},
    absolute_metrics: {metric: [v]}}}}}}, every task under one environment (`jlmarl`) so that
    marl-eval aggregates over the same tasks as this report.

    Metrics: `return` (test_return_mean; pass metrics_to_normalize=["return"] for marl-eval's own
    min-max), `win_rate` where every task logs it, and `score`, the normalised score of this report.
    One evaluation logs a mean, so each list holds one value. absolute_metrics hold the final score
    of this report (mean of the last `last` evaluations), not marl-eval's 10x re-evaluation of the
    best policy, which jlmarl does not run."""
    c = comparison
    with_win = all(r.win_rates is not None for r in c.runs)

    def pooled(algo: str, task: str, attribute: str) -> np.ndarray:
        return np.concatenate([getattr(r, attribute) for r in c.runs if r.algo == algo and r.task == task])

    out = {}
    for j, task in enumerate(c.tasks):
        out[task] = {}
        for algo in c.algos:
            metrics = {"return": pooled(algo, task, "returns"), "score": c.curves[algo][:, j]}
            if with_win:
                metrics["win_rate"] = pooled(algo, task, "win_rates")
            runs = {}
            for k in range(len(metrics["score"])):
                run = {
                    f"step_{i}": {
                        "step_count": int(step),
                        **{m: [float(v[k, i])] for m, v in metrics.items()},
                    }
                    for i, step in enumerate(c.steps)
                }
                # marl-eval reads absolute_metrics as the run's last key.
                run["absolute_metrics"] = {m: [float(v[k, -c.last :].mean())] for m, v in metrics.items()}
                runs[f"run_{k}"] = run
            out[task][algo] = runs
    return {MARL_EVAL_ENV: out}
