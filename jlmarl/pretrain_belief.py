"""python -m jlmarl.pretrain_belief env=<env> [belief_i2q.<key>=value ...]

Stage 1 of Belief-I2Q (seed 002): collect `belief_i2q.episodes` episodes with a
uniformly random policy (vmapped envs; from random starts, as the paper does, with
`belief_i2q.random_start=true` where the env has that option), train the
recurrent conditional VAE (jlmarl.algos.belief_model) offline on each agent's history
labelled with the env's hidden state (EnvSpec.hidden_dims), evaluate it on
`belief_i2q.eval_episodes` fresh episodes of the env itself, and save it with
orbax to `belief_i2q.checkpoint` (default beliefs/<env>), where
`python -m jlmarl.train algo=belief_i2q env=<env>` finds it. The checkpoint also
holds belief.json (env spec, model sizes, metrics) so that a run refuses a model
trained for another env.

Metrics: the belief's error against the true hidden state at every time step
(squared error summed over the hidden entries, with z from the prior as when
acting), the posterior reconstruction error and KL(q || p).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
from omegaconf import DictConfig, OmegaConf

from jlmarl import envs
from jlmarl.algos.belief_model import (
    META_FILE,
    PARAMS_DIR,
    BeliefConfig,
    belief_meta,
    collect_episodes,
    evaluate_belief,
    make_model,
    save_belief,
    train_belief,
)
from jlmarl.config import ConfigError, load_config
from jlmarl.core import compile_cache
from jlmarl.envs.base import Env


def make_env(cfg: DictConfig, **extra) -> Env:
    env_kwargs = {k: v for k, v in OmegaConf.to_container(cfg.env, resolve=True).items() if k != "name"}
    return envs.make(cfg.env.name, **{**env_kwargs, **extra})  # extra wins over the run's env keys


def collection_env(cfg: DictConfig, env: Env) -> Env:
    """The env the training data comes from: `env`, or its random-start version."""
    if not cfg.belief_i2q.random_start:
        return env
    try:
        return make_env(cfg, random_start=True)
    except TypeError as e:
        if "random_start" not in str(e):
            raise
        raise ConfigError(
            f"belief_i2q.random_start=true, but env={cfg.env.name} has no random_start option; "
            "set belief_i2q.random_start=false"
        ) from None


def pretrain(cfg: DictConfig, log_every: int = 500, env: Env | None = None) -> dict:
    """The whole stage for a composed run config; returns the metrics it saved. `env`
    replaces the env that cfg.env names (tests with unregistered envs)."""
    if cfg.algo.name != "belief_i2q":
        raise ConfigError(
            f"pretrain_belief reads the belief_i2q group of algo=belief_i2q, got algo={cfg.algo.name}"
        )
    compile_cache.enable(cfg.get("compile_cache", "default"))
    bcfg = BeliefConfig.from_cfg(cfg.belief_i2q)
    path = Path(cfg.belief_i2q.checkpoint).resolve()
    if (path / META_FILE).exists() or (path / PARAMS_DIR).exists():
        raise ConfigError(
            f"belief_i2q.checkpoint={path} already holds a belief model; choose another path or delete it"
        )
    env = make_env(cfg) if env is None else env
    spec = env.spec
    t0 = time.time()
    key = jax.random.PRNGKey(cfg.seed)
    k_train, k_eval_data, k_eval = jax.random.split(key, 3)
    # Evaluated on `env` itself: the distribution the belief is used on.
    params, _, log = train_belief(collection_env(cfg, env), bcfg, k_train, log_every)
    train_s = time.time() - t0
    eval_batch = collect_episodes(env, k_eval_data, bcfg.eval_episodes)
    model = make_model(spec, bcfg)
    ev = evaluate_belief(model, params, spec, eval_batch, k_eval, bcfg.samples, bcfg.temperature)
    label = ev["label"][:, 0]
    metrics = {
        "belief_error_by_t": ev["belief_error"].tolist(),
        "belief_std_by_t": ev["belief_std"].tolist(),
        "recon_by_t": ev["recon"].tolist(),
        "kl_by_t": ev["kl"].tolist(),
        "count_by_t": ev["count"].tolist(),
        # error of always predicting the hidden state's mean (what a history-blind model can do)
        "prior_mean_error": float(((label - label.mean(0)) ** 2).sum(-1).mean()),
        "train_log": log,
        "train_s": round(train_s, 2),
    }
    save_belief(path, params, belief_meta(spec, bcfg, metrics))
    _print_table(metrics, path)
    return metrics


def _print_table(metrics: dict, path: Path) -> None:
    err, kl, count = metrics["belief_error_by_t"], metrics["kl_by_t"], metrics["count_by_t"]
    print(f"{'t':>4} {'belief_error':>12} {'kl':>8} {'n':>6}")
    for t, (e, k, c) in enumerate(zip(err, kl, count, strict=True)):
        if c > 0:
            print(f"{t:>4} {e:>12.4f} {k:>8.4f} {int(c):>6}")
    print(
        f"error of the hidden state's mean (no history): {metrics['prior_mean_error']:.4f}; "
        f"trained in {metrics['train_s']:.1f}s; saved to {path}"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("--help", "-h", "help") for a in argv):
        print(__doc__.strip())
        return
    if not any(a.startswith("algo=") for a in argv):
        argv = ["algo=belief_i2q", *argv]
    try:
        pretrain(load_config(argv))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
