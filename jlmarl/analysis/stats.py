"""Aggregate statistics of normalised scores with stratified bootstrap CIs, all from
rliable (Agarwal et al. 2021, the statistics under marl-eval); no bootstrap is written here.

Scores are per algorithm: final scores [S, T] (seeds x tasks), curves [S, T, B] over the
evaluation grid. The stratified bootstrap resamples seeds within each task.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import scipy.stats
from rliable import library as rly
from rliable import metrics

AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "iqm": metrics.aggregate_iqm,
    "median": metrics.aggregate_median,
    "mean": metrics.aggregate_mean,
    "optimality_gap": metrics.aggregate_optimality_gap,  # 1 - mean(min(score, 1)): lower is better
}


class Estimate(NamedTuple):
    value: np.ndarray | float
    low: np.ndarray | float
    high: np.ndarray | float


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """rliable's resampling draws from NumPy's global RNG (np.random.choice), not from the
    random_state it accepts: seed it so CIs repeat, and give the caller's state back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _interval(scores, func, reps: int, seed: int, confidence: float) -> Estimate:
    with seeded(seed):
        point, interval = rly.get_interval_estimates(
            {"x": scores}, func, reps=reps, confidence_interval_size=confidence
        )
    return Estimate(np.asarray(point["x"]), interval["x"][0], interval["x"][1])


def aggregate_estimates(
    scores: dict[str, np.ndarray], reps: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, dict[str, Estimate]]:
    """Per algorithm, IQM / median / mean / optimality gap of its [S, T] scores with CIs."""
    names = list(AGGREGATES)

    def all_aggregates(x):
        return np.array([AGGREGATES[name](x) for name in names])

    out = {}
    for algo, x in scores.items():
        est = _interval(np.asarray(x, np.float64), all_aggregates, reps, seed, confidence)
        out[algo] = {
            name: Estimate(float(est.value[i]), float(est.low[i]), float(est.high[i]))
            for i, name in enumerate(names)
        }
    return out


def _improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """rliable's metrics.probability_of_improvement in one array step (its loop of Mann-Whitney
    tests is ~100x slower inside a bootstrap): per task, the fraction of seed pairs where x beats
    y, ties counting half (identical score sets give 0.5, as rliable's special case does),
    averaged over tasks."""
    x, y = scores_x[:, None, :], scores_y[None, :, :]  # (Sx, 1, T), (1, Sy, T)
    return float(np.mean((x > y) + 0.5 * (x == y)))


def probability_of_improvement(
    scores: dict[str, np.ndarray], reps: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[tuple[str, str], Estimate]:
    """P(X > Y) for every ordered pair of algorithms: the chance that a seed of X beats a seed
    of Y on a task, averaged over tasks (ties count half), with CIs from rliable's stratified
    independent bootstrap (seeds of X and of Y resampled apart). Each pair is bootstrapped once:
    P(Y > X) = 1 - P(X > Y) and its CI is the mirror image over the same resamples."""
    out = {}
    for x, y in itertools.combinations(scores, 2):
        with seeded(seed):
            point, interval = rly.get_interval_estimates(
                {"xy": [np.asarray(scores[x], np.float64), np.asarray(scores[y], np.float64)]},
                _improvement,
                reps=reps,
                confidence_interval_size=confidence,
            )
        p, (low, high) = float(point["xy"]), np.ravel(interval["xy"]).tolist()
        out[x, y] = Estimate(p, low, high)
        out[y, x] = Estimate(1 - p, 1 - high, 1 - low)
    return out


def performance_profiles(
    scores: dict[str, np.ndarray], taus: np.ndarray, reps: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Estimate]:
    """Per algorithm, the fraction of its runs (seed x task) with score > tau, for each tau."""
    with seeded(seed):
        profiles, cis = rly.create_performance_profile(
            {a: np.asarray(s, np.float64) for a, s in scores.items()},
            taus,
            reps=reps,
            confidence_interval_size=confidence,
        )
    return {a: Estimate(profiles[a], cis[a][0], cis[a][1]) for a in scores}


def iqm_curves(
    curves: dict[str, np.ndarray], reps: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Estimate]:
    """Per algorithm, the IQM over seeds x tasks at each evaluation of its [S, T, B] scores."""

    def iqm_per_step(x):  # rliable's aggregate_iqm, one trimmed mean per step in one call
        return scipy.stats.trim_mean(x.reshape(-1, x.shape[-1]), proportiontocut=0.25, axis=0)

    return {
        a: _interval(np.asarray(c, np.float64), iqm_per_step, reps, seed, confidence)
        for a, c in curves.items()
    }


def task_means(
    scores: dict[str, np.ndarray], reps: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, list[Estimate]]:
    """Per algorithm and task, the mean score over seeds with its bootstrap CI."""
    return {
        algo: [
            _interval(x[:, [j]], metrics.aggregate_mean, reps, seed, confidence) for j in range(x.shape[1])
        ]
        for algo, x in ((a, np.asarray(s, np.float64)) for a, s in scores.items())
    }
