"""Fixed-seed updates of every learner, for the regression test (tests/test_regression.py).

Each case builds one algo on a small env, collects a batch with the uniform random
policy, and records the metrics of two jitted updates, the parameters' absolute sum
after them (invariant to renaming the parameter tree) and the actions of one acting
step, greedy and exploring. `python tests/regression_cases.py` rewrites the reference
file; do that only when a change is meant to alter the numbers, and say why.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jlmarl import algos, envs
from jlmarl.algos import i2q
from jlmarl.config import load_config
from jlmarl.core.algo import UpdateContext
from jlmarl.core.rollout import UniformRandomPolicy, run_episodes
from jlmarl.nets.belief import BeliefModel, init_belief

REFERENCE = Path(__file__).parent / "data" / "regression_reference.json"
BATCH = 4
# algo -> (env, extra overrides)
CASES = {
    "iql": ("matrix_three_state", ["algo.gamma=0.9"]),
    "vdn": ("matrix_three_state", ["algo.gamma=0.9"]),
    "qmix": ("matrix_three_state", ["algo.gamma=0.9"]),
    "lsf_sac": ("matrix_three_state", ["algo.gamma=0.9"]),
    "masac": ("matrix_three_state", ["algo.gamma=0.9"]),
    "rec_i2q": ("oracle", []),
    "rec_hyst_iql": ("oracle", []),
    "belief_i2q": ("oracle", []),
    "limarl": ("matrix_three_state", ["algo.gamma=0.9"]),
    "mmsa": ("matrix_three_state", ["algo.gamma=0.9"]),
    "vdfd": ("matrix_three_state", ["algo.gamma=0.9"]),
    "pqn_vdn": ("matrix_three_state", ["num_envs=16", "pqn.minibatches=2"]),
}


def _build(name: str, env, cfg):
    if name != "belief_i2q":
        return algos.build(name, env.spec, cfg)
    b = _plain(cfg.belief_i2q)
    model = BeliefModel(len(env.spec.hidden_dims), b["hidden_dim"], b["z_dim"], b["mlp_dim"])
    params = init_belief(model, jax.random.PRNGKey(7), env.spec.obs_dim + env.spec.n_actions)
    algo_cfg = _plain(cfg.algo)
    return i2q.build(env.spec, algo_cfg, context="belief", name=name, method=b, belief=(model, params))


def _plain(node):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)


def run_case(name: str) -> dict:
    env_name, overrides = CASES[name]
    cfg = load_config([f"algo={name}", f"env={env_name}", *overrides])
    env = envs.make(env_name)
    algo = _build(name, env, cfg)
    collect = jax.jit(run_episodes, static_argnums=(0, 1, 4, 6))
    batch, _ = collect(env, UniformRandomPolicy(), None, jax.random.PRNGKey(3), BATCH, jnp.int32(0), False)
    ts = algo.init(jax.random.PRNGKey(1))
    update = jax.jit(algo.update)
    out = {}
    for i in range(2):
        # with declared phases, the first update is in the first phase, the second in main
        # training; a method that reads the newest buffer episodes gets this batch
        phase = jnp.int32(min(i, len(algo.phases)))
        recent = batch if algo.recent_episodes else None
        ctx = UpdateContext(jnp.int32(400), jnp.int32(40), jnp.int32(i), phase, recent)
        ts, metrics = update(ts, batch, jax.random.PRNGKey(10 + i), ctx)
        out.update({f"update{i}/{k}": float(v) for k, v in metrics.items()})
    out["params_abs_sum"] = float(sum(jnp.abs(x).sum() for x in jax.tree.leaves(ts.params)))
    actor = algo.init_actor(BATCH)
    for greedy in (True, False):
        actions, _ = algo.act(ts, actor, batch.obs[:, 0], batch.avail[:, 0], jax.random.PRNGKey(5), 0, greedy)
        out[f"actions_greedy={greedy}"] = np.asarray(actions).tolist()
    return out


if __name__ == "__main__":
    names = sys.argv[1:] or list(CASES)
    ref = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {}
    for n in names:
        ref[n] = run_case(n)
        print(n, ref[n])
    REFERENCE.write_text(json.dumps(ref, indent=1, sort_keys=True))
