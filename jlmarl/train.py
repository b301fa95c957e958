"""python -m jlmarl.train algo=<algo> env=<env> [key=value ...]

A thin driver around the compiled chunk (jlmarl.core.engine): it only decides
which seeds evaluate next, writes metrics, and draws progress.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

from jlmarl import algos, envs
from jlmarl.config import ConfigError, load_config
from jlmarl.core.buffer import check_buffer_fits
from jlmarl.core.engine import Engine, EngineConfig
from jlmarl.core.metrics_log import MetricsLog
from jlmarl.core.qtables import q_tables


def build(cfg: DictConfig) -> Engine:
    env_kwargs = {k: v for k, v in OmegaConf.to_container(cfg.env, resolve=True).items() if k != "name"}
    env = envs.make(cfg.env.name, **env_kwargs)
    algo = algos.build(cfg.algo.name, env.spec, OmegaConf.to_container(cfg.algo, resolve=True))
    return Engine(env, algo, EngineConfig.from_cfg(cfg))


def prepare_run_dir(cfg: DictConfig) -> Path:
    if cfg.run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        cfg.run_dir = f"runs/{cfg.algo.name}_{cfg.env.name}_{stamp}"
    run_dir = Path(cfg.run_dir)
    if (run_dir / "metrics").exists():
        raise ConfigError(f"run_dir={run_dir} already holds a run (metrics/ exists); choose another run_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    return run_dir


class _Averages:
    """Per-seed running means of the train metrics between two log lines."""

    def __init__(self, num_seeds: int):
        self.sums = [defaultdict(float) for _ in range(num_seeds)]
        self.counts = [defaultdict(int) for _ in range(num_seeds)]

    def add(self, k: int, metrics: dict, update_keys: tuple[str, ...]) -> None:
        trained = metrics["trained"][k] > 0
        for name, values in metrics.items():
            if name == "trained" or (name in update_keys and not trained):
                continue
            self.sums[k][name] += float(values[k])
            self.counts[k][name] += 1

    def pop(self, k: int) -> dict:
        out = {name: self.sums[k][name] / self.counts[k][name] for name in self.sums[k]}
        self.sums[k].clear()
        self.counts[k].clear()
        return out


def run(cfg: DictConfig) -> dict:
    """Trains every seed of `cfg` to total_steps; returns the final test metrics per seed."""
    engine = build(cfg)
    spec, n_seeds, total = engine.env.spec, cfg.num_seeds, cfg.total_steps
    check_buffer_fits(spec, cfg.buffer_size, n_seeds, jax.devices()[0])
    run_dir = prepare_run_dir(cfg)
    seeds = [cfg.seed + k for k in range(n_seeds)]
    t_start = time.time()
    carry = engine.init(engine.seed_keys(seeds))

    t0 = time.time()
    all_due = np.ones(n_seeds, bool)
    chunk = engine.chunk.lower(carry, np.int32(0), np.bool_(True), all_due).compile()
    compile_s = time.time() - t0
    print(
        f"jlmarl: {cfg.algo.name} on {spec.name}, {n_seeds} seed(s) x {cfg.num_envs} envs; "
        f"chunk compiled in {compile_s:.1f}s; run_dir={run_dir}",
        flush=True,
    )

    log = MetricsLog(run_dir, n_seeds)
    averages = _Averages(n_seeds)
    bar = _progress_bar(cfg)
    env_steps = np.zeros(n_seeds, np.int64)
    next_test = np.zeros(n_seeds, np.int64)
    # (env_steps, wall) of each seed's last line; rates exclude the compile
    last_logged = [(-1, time.time())] * n_seeds
    final = [dict() for _ in range(n_seeds)]
    chunk_idx = 0

    def log_tests(due, test, episodes):
        now = time.time()
        for k in np.flatnonzero(due):
            prev_steps, prev_wall = last_logged[k]
            record = {
                "seed": seeds[k],
                "env_steps": int(env_steps[k]),
                "episodes": int(episodes[k]),
                "wall_s": round(now - t_start, 3),
                "env_steps_per_s": (env_steps[k] - max(prev_steps, 0)) / max(now - prev_wall, 1e-9),
                **averages.pop(k),
                **{name: float(v[k]) for name, v in test.items()},
            }
            log.write(k, record)
            final[k] = record
            last_logged[k] = (int(env_steps[k]), now)
        _report(bar, cfg, env_steps, final, due)

    try:
        while (env_steps < total).any():
            due = (env_steps >= next_test) & (env_steps < total)
            carry, train_m, test_m = chunk(carry, np.int32(chunk_idx), np.bool_(True), due)
            train_m, test_m, steps, episodes = jax.device_get(
                (train_m, test_m, carry.env_steps, carry.episodes)
            )
            chunk_idx += 1
            for k in np.flatnonzero(env_steps < total):
                averages.add(k, train_m, engine.algo.metric_names)
            next_test = np.where(due, (env_steps // cfg.test_interval + 1) * cfg.test_interval, next_test)
            env_steps = steps.astype(np.int64)
            if due.any():
                log_tests(due, test_m, episodes)
        # A last evaluation for every seed whose newest line is older than its final params.
        due = np.array([last_logged[k][0] != env_steps[k] for k in range(n_seeds)])
        if due.any():
            carry, _, test_m = chunk(carry, np.int32(chunk_idx), np.bool_(False), due)
            log_tests(due, jax.device_get(test_m), jax.device_get(carry.episodes))
    finally:
        log.close()
        if bar is not None:
            bar.close()

    if hasattr(engine.env, "payoff") and engine.algo.joint_q is not None:
        tables = q_tables(engine, carry, cfg.test_episodes, jax.random.PRNGKey(cfg.seed))
        (run_dir / "q_tables.json").write_text(json.dumps(tables, indent=1))
    summary = {
        "run_dir": str(run_dir),
        "compile_s": compile_s,
        "wall_s": time.time() - t_start,
        "seeds": final,
    }
    _print_summary(summary, spec.info_keys)
    return summary


def _progress_bar(cfg):
    if not (cfg.progress and sys.stdout.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.total_steps, unit="step", unit_scale=True, dynamic_ncols=True)


def _report(bar, cfg, env_steps, final, due):
    tests = [final[k] for k in np.flatnonzero(due)]
    ret = np.mean([r["test_return_mean"] for r in tests])
    win = [r["test_win_rate"] for r in tests if "test_win_rate" in r]
    text = f"test_return {ret:.3f}" + (f" test_win_rate {np.mean(win):.3f}" if win else "")
    if bar is not None:
        bar.n = int(min(env_steps.min(), cfg.total_steps))
        bar.set_postfix_str(text)
        return
    print(f"env_steps {int(env_steps.min())}/{cfg.total_steps} {text}", flush=True)


def _print_summary(summary: dict, info_keys) -> None:
    seeds = summary["seeds"]
    names = ["test_return_mean", "test_ep_length"] + (["test_win_rate"] if "won" in info_keys else [])
    for name in names:
        values = [s[name] for s in seeds]
        per_seed = ", ".join(f"{v:.3f}" for v in values)
        print(f"final {name}: {np.mean(values):.3f} (mean over {len(values)} seed(s): {per_seed})")
    print(
        f"wall time {summary['wall_s']:.1f}s (compile {summary['compile_s']:.1f}s); "
        f"metrics in {summary['run_dir']}/metrics/"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = load_config(argv)
        run(cfg)
    except (ConfigError, MemoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
