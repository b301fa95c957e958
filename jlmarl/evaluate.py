"""python -m jlmarl.evaluate run_dir=<run> [episodes=N] [render=true]

Loads the newest good checkpoint of a run, plays N greedy episodes per seed,
prints a table (return, win rate where the env has one, episode length: per seed,
then the mean and a 95% bootstrap CI over seeds) and writes run_dir/eval.json.
render=true (SMAX) also writes run_dir/episode_seed<k>.gif of one greedy episode.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import jax
import numpy as np
from omegaconf import OmegaConf

from jlmarl.config import ConfigError
from jlmarl.core import compile_cache
from jlmarl.core.checkpoint import CheckpointError
from jlmarl.core.rollout import run_episodes
from jlmarl.plot import bootstrap_ci
from jlmarl.render import RenderError, draw_gif, record_episode
from jlmarl.train import build, open_checkpoints

OPTIONS = {"run_dir", "run", "episodes", "render", "seed"}


def parse_args(argv: list[str]) -> dict:
    options = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in OPTIONS:
            raise ConfigError(
                f"unknown argument {arg!r}; usage: python -m jlmarl.evaluate run_dir=<run> "
                "[episodes=N] [render=true] [seed=S]"
            )
        options["run_dir" if key == "run" else key] = value
    if "run_dir" not in options:
        raise ConfigError("run_dir=<run folder> is required")
    try:
        episodes = int(options.get("episodes", 32))
        seed = int(options.get("seed", 0))
    except ValueError:
        raise ConfigError("episodes and seed must be integers") from None
    if episodes <= 0:
        raise ConfigError(f"episodes must be a positive integer, got {episodes}")
    render = options.get("render", "false").lower()
    if render not in ("true", "false"):
        raise ConfigError(f"render must be true or false, got {render!r}")
    run_dir = Path(options["run_dir"])
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"run_dir={run_dir} is not a run folder (no config.yaml)")
    return {"run_dir": run_dir, "episodes": episodes, "render": render == "true", "seed": seed}


def evaluate(run_dir: Path, episodes: int, render: bool = False, seed: int = 0) -> dict:
    cfg = OmegaConf.load(run_dir / "config.yaml")
    compile_cache.enable(cfg.get("compile_cache", "default"))
    engine = build(cfg)
    env, algo = engine.env, engine.algo
    seeds = [cfg.seed + k for k in range(cfg.num_seeds)]
    ckpt, abstract = open_checkpoints(cfg, run_dir, jax.eval_shape(engine.init, engine.seed_keys(seeds)))
    carry, driver, step = ckpt.restore_latest(abstract)

    def play(train_state, key):
        _, stats = run_episodes(env, algo, train_state, key, episodes, np.int32(0), True)
        won = stats.info.get("won")
        return stats.returns, stats.lengths, won if won is not None else stats.returns * 0

    keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.PRNGKey(seed), k))(np.arange(len(seeds)))
    t0 = time.time()
    try:
        returns, lengths, wins = jax.device_get(jax.jit(jax.vmap(play))(carry.train_state, keys))
    finally:
        if hasattr(env, "close"):
            env.close()
    per_seed = {
        "return_mean": returns.mean(axis=1),
        "ep_length": lengths.mean(axis=1),
        **({"win_rate": wins.mean(axis=1)} if "won" in env.spec.info_keys else {}),
    }
    summary = {}
    for name, values in per_seed.items():
        low, high = bootstrap_ci(values[:, None]) if len(values) > 1 else (values[:1], values[:1])
        summary[name] = {"mean": float(values.mean()), "ci95": [float(low[0]), float(high[0])]}
    result = {
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt.directory / str(step)),
        "env_steps": driver["env_steps"],
        "episodes_per_seed": episodes,
        "eval_seed": seed,
        "seeds": seeds,
        "per_seed": {k: v.tolist() for k, v in per_seed.items()},
        "summary": summary,
        "wall_s": time.time() - t0,
    }
    if render:
        gifs = []
        for k in range(len(seeds)):
            train_state = jax.tree.map(lambda x, k=k: x[k], carry.train_state)
            episode = record_episode(env, algo, train_state, jax.random.fold_in(keys[k], 1))
            gifs.append(str(draw_gif(env, episode, run_dir / f"episode_seed{seeds[k]}.gif")))
        result["gifs"] = gifs
    tmp = run_dir / ".eval.json.tmp"  # never a half-written eval.json
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, run_dir / "eval.json")
    return result


def print_table(result: dict) -> None:
    names = list(result["per_seed"])
    steps, n = min(result["env_steps"]), result["episodes_per_seed"]
    print(f"{result['checkpoint']} (env_steps {steps}), {n} episodes/seed")
    print(f"{'seed':>6} " + " ".join(f"{n:>14}" for n in names))
    for i, seed in enumerate(result["seeds"]):
        print(f"{seed:>6} " + " ".join(f"{result['per_seed'][n][i]:>14.3f}" for n in names))
    print(f"{'mean':>6} " + " ".join(f"{result['summary'][n]['mean']:>14.3f}" for n in names))
    cis = [result["summary"][n]["ci95"] for n in names]
    ci = " ".join(f"{f'[{low:.2f}, {high:.2f}]':>14}" for low, high in cis)
    print(f"{'95% CI':>6} {ci}")
    for gif in result.get("gifs", []):
        print(f"wrote {gif}")
    print(f"wrote {result['run_dir']}/eval.json")


def _stop(signum, frame):
    # Evaluation writes only eval.json (atomically, at the end): stopping at once is safe,
    # and exiting here rather than raising never unwinds through XLA's compiler.
    name = signal.Signals(signum).name
    print(f"\n{name}: evaluation stopped; nothing written", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("--help", "-h", "help") for a in argv):
        print(__doc__.strip())
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    try:
        print_table(evaluate(**parse_args(argv)))
    except (ConfigError, CheckpointError, RenderError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
