"""Belief-I2Q's stage 1 as a library (seed 002): collect random-policy episodes, fit
the recurrent conditional VAE of jlmarl.nets.belief to each agent's history
labelled with the env's hidden state (EnvSpec.hidden_dims), evaluate it, and save
or load it (orbax params + belief.json with the env spec, model sizes and metrics,
so that a run refuses a model trained for another env).

`python -m jlmarl.pretrain_belief` is the command-line front; `algos/i2q.py`
loads the saved model.
"""

from __future__ import annotations

import dataclasses
import json
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from jlmarl.core.algo import AlgoConfigError
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.core.rollout import UniformRandomPolicy, run_episodes
from jlmarl.envs.base import Env, EnvSpec
from jlmarl.nets.belief import (
    BeliefModel,
    cvae_terms,
    episode_history_inputs,
    init_belief,
    sample_belief,
    unroll_history,
)

META_FILE = "belief.json"
PARAMS_DIR = "params"
# 2: the decoder has a variance head (Gaussian likelihood) and the belief is its mean and
# log-variance; format-1 models (unit-variance decoder, mean-only belief) are refused.
FORMAT_VERSION = 2


@dataclasses.dataclass(frozen=True)
class BeliefConfig:
    episodes: int = 5000  # random-policy episodes to train on
    eval_episodes: int = 500  # fresh episodes for the metrics
    train_steps: int = 3000  # gradient steps
    batch_size: int = 64  # episodes per gradient step
    lr: float = 1e-3
    kl_weight: float = 1.0
    hidden_dim: int = 64
    z_dim: int = 8
    mlp_dim: int = 64
    samples: int = 2  # decoded draws averaged into a belief
    temperature: float = 0.5  # scale of the prior's std when drawing z
    random_start: bool = False  # collect the training data from random starts (env option random_start)

    @classmethod
    def from_cfg(cls, belief_cfg) -> BeliefConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(belief_cfg).items() if k in fields})


def make_model(spec: EnvSpec, bcfg: BeliefConfig) -> BeliefModel:
    return BeliefModel(len(spec.hidden_dims), bcfg.hidden_dim, bcfg.z_dim, bcfg.mlp_dim)


def hidden_labels(state: jax.Array, spec: EnvSpec) -> jax.Array:
    """state [..., state_dim] -> the hidden part [..., len(hidden_dims)]."""
    return state[..., jnp.asarray(spec.hidden_dims)]


def _valid_positions(batch: EpisodeBatch) -> jax.Array:
    """[B, T+1]: observation t belongs to the episode (t = 0, or step t-1 was taken)."""
    return jnp.concatenate([jnp.ones_like(batch.mask[:, :1]), batch.mask], axis=1).astype(jnp.float32)


_run_episodes = jax.jit(run_episodes, static_argnums=(0, 1, 4, 6))


def collect_episodes(env: Env, key: jax.Array, n_episodes: int) -> EpisodeBatch:
    """n_episodes whole episodes of a uniformly random policy, vmapped over envs."""
    batch, _ = _run_episodes(env, UniformRandomPolicy(), None, key, n_episodes, jnp.int32(0), False)
    return batch


def belief_loss(model: BeliefModel, params, spec: EnvSpec, batch: EpisodeBatch, key, kl_weight: float):
    h = unroll_history(model, params, episode_history_inputs(batch.obs, batch.actions, spec.n_actions))
    label = jnp.broadcast_to(hidden_labels(batch.state, spec)[:, :, None], (*h.shape[:-1], model.label_dim))
    nll, sq, kl = cvae_terms(model, params, h, label, key)
    valid = jnp.broadcast_to(_valid_positions(batch)[..., None], nll.shape)
    count = jnp.maximum(valid.sum(), 1.0)
    nll_mean, sq_mean, kl_mean = ((x * valid).sum() / count for x in (nll, sq, kl))
    return nll_mean + kl_weight * kl_mean, {"nll": nll_mean, "recon": sq_mean, "kl": kl_mean}


def train_belief(
    env: Env, bcfg: BeliefConfig, key: jax.Array, log_every: int = 0
) -> tuple[Any, EpisodeBatch, list[dict]]:
    """Collects the random-policy data and fits the CVAE. Returns (params, data, log)."""
    spec = env.spec
    model = make_model(spec, bcfg)
    k_data, k_init, k_train = jax.random.split(key, 3)
    data = collect_episodes(env, k_data, bcfg.episodes)
    params = init_belief(model, k_init, spec.obs_dim + spec.n_actions)
    optimizer = optax.adam(bcfg.lr)

    def one_step(carry, step_key):
        params, opt_state = carry
        k_idx, k_loss = jax.random.split(step_key)
        idx = jax.random.randint(k_idx, (bcfg.batch_size,), 0, bcfg.episodes)
        batch = jax.tree.map(lambda x: x[idx], data)
        (loss, aux), grads = jax.value_and_grad(belief_loss, argnums=1, has_aux=True)(
            model, params, spec, batch, k_loss, bcfg.kl_weight
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), {"loss": loss, **aux}

    block = log_every if log_every > 0 else bcfg.train_steps

    @jax.jit
    def run_block(carry, keys):
        carry, metrics = jax.lax.scan(one_step, carry, keys)
        return carry, jax.tree.map(jnp.mean, metrics)

    carry, log, done = (params, optimizer.init(params)), [], 0
    while done < bcfg.train_steps:
        n = min(block, bcfg.train_steps - done)
        keys = jax.random.split(jax.random.fold_in(k_train, done), n)
        carry, metrics = run_block(carry, keys)
        done += n
        log.append({"step": done, **{k: float(v) for k, v in metrics.items()}})
        if log_every > 0:
            print(
                f"belief step {done}/{bcfg.train_steps} "
                + " ".join(f"{k} {v:.4f}" for k, v in log[-1].items() if k != "step"),
                flush=True,
            )
    return carry[0], data, log


def evaluate_belief(
    model: BeliefModel,
    params,
    spec: EnvSpec,
    batch: EpisodeBatch,
    key: jax.Array,
    samples: int,
    temperature: float,
) -> dict[str, np.ndarray]:
    """Per time step t (observations 0..T), averaged over valid (episode, agent) pairs:
    belief_error (the belief's mean vs the true hidden state, squared error summed over
    the hidden entries), belief_std (the belief's decoded standard deviation, mean over
    the entries), recon (posterior reconstruction error), kl; and count (valid pairs).
    Also belief [B, T+1, n, L] (its mean part) and label [B, T+1, L] for env-specific
    tables."""
    out = _evaluate(model, params, spec, batch, key, samples, temperature)
    return {k: np.asarray(v) for k, v in out.items()}


@partial(jax.jit, static_argnums=(0, 2, 5))
def _evaluate(model, params, spec, batch, key, samples, temperature):
    k_belief, k_post = jax.random.split(key)
    h = unroll_history(model, params, episode_history_inputs(batch.obs, batch.actions, spec.n_actions))
    label = hidden_labels(batch.state, spec)
    belief, belief_logvar = jnp.split(sample_belief(model, params, h, k_belief, samples, temperature), 2, -1)
    label_n = jnp.broadcast_to(label[:, :, None], belief.shape)
    _, recon, kl = cvae_terms(model, params, h, label_n, k_post)
    err = ((belief - label_n) ** 2).sum(-1)
    valid = jnp.broadcast_to(_valid_positions(batch)[..., None], err.shape)
    count = valid.sum(axis=(0, 2))
    by_t = lambda x: (x * valid).sum(axis=(0, 2)) / jnp.maximum(count, 1.0)  # noqa: E731
    return {
        "belief_error": by_t(err),
        "belief_std": by_t(jnp.exp(0.5 * belief_logvar).mean(-1)),
        "recon": by_t(recon),
        "kl": by_t(kl),
        "count": count,
        "belief": belief,
        "label": label,
    }


def save_belief(path: str | Path, params, meta: dict) -> Path:
    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path / PARAMS_DIR, params)
    checkpointer.wait_until_finished()
    (path / META_FILE).write_text(json.dumps(meta, indent=1))
    return path


def belief_meta(spec: EnvSpec, bcfg: BeliefConfig, metrics: dict | None = None) -> dict:
    return {
        "format": FORMAT_VERSION,
        "env": spec.name,
        "n_agents": spec.n_agents,
        "obs_dim": spec.obs_dim,
        "n_actions": spec.n_actions,
        "state_dim": spec.state_dim,
        "hidden_dims": list(spec.hidden_dims),
        "model": {"hidden_dim": bcfg.hidden_dim, "z_dim": bcfg.z_dim, "mlp_dim": bcfg.mlp_dim},
        "training": dataclasses.asdict(bcfg),
        "metrics": metrics or {},
    }


def load_belief(path: str | Path, spec: EnvSpec) -> tuple[BeliefModel, Any, dict]:
    """Restores a saved belief model for `spec`; ConfigError (one sentence) if there is
    none at `path` or it was trained for an env with other shapes or hidden entries."""
    path = Path(path).resolve()
    if not (path / META_FILE).is_file() or not (path / PARAMS_DIR).is_dir():
        raise AlgoConfigError(
            f"belief_i2q.checkpoint={path} holds no belief model; pre-train one with "
            f"`python -m jlmarl.pretrain_belief env={spec.name} belief_i2q.checkpoint={path}` "
            "or point belief_i2q.checkpoint at an existing one"
        )
    meta = json.loads((path / META_FILE).read_text())
    if meta.get("format", 1) != FORMAT_VERSION:
        raise AlgoConfigError(
            f"belief_i2q.checkpoint={path} holds a format-{meta.get('format', 1)} belief model (decoder "
            f"without a variance head), which this version cannot use; pre-train it again with "
            f"`python -m jlmarl.pretrain_belief env={spec.name} belief_i2q.checkpoint=<new folder>`"
        )
    expected = {
        "obs_dim": spec.obs_dim,
        "n_actions": spec.n_actions,
        "state_dim": spec.state_dim,
        "hidden_dims": list(spec.hidden_dims),
    }
    found = {k: meta.get(k) for k in expected}
    if found != expected:
        raise AlgoConfigError(
            f"belief_i2q.checkpoint={path} was trained for env {meta.get('env')} with {found}, "
            f"but env={spec.name} has {expected}; pre-train a belief model for this env"
        )
    m = meta["model"]
    model = BeliefModel(len(spec.hidden_dims), int(m["hidden_dim"]), int(m["z_dim"]), int(m["mlp_dim"]))
    abstract = jax.eval_shape(
        lambda: init_belief(model, jax.random.PRNGKey(0), spec.obs_dim + spec.n_actions)
    )
    params = ocp.StandardCheckpointer().restore(path / PARAMS_DIR, abstract)
    return model, params, meta
