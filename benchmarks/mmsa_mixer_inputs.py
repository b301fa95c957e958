"""What MMSA's mixer reads in a trained run: the state beside the imagined rollout.

    python benchmarks/mmsa_mixer_inputs.py RUN_DIR [RUN_DIR ...] [--episodes 32] [--out FILE]

Restores each run's newest checkpoint and, for every seed, takes the newest --episodes
episodes of its replay and computes the mixer's conditioning input as the update does:
the global state s_t and ŝ^Rollout_t = (ŝ_t, ŝ_{t+1}, ..., ŝ_{t+j}) from the posterior mean
(the paper sets each imagined ŝ_{t+k} to VAE-1's predicted z^s, an AvgL1Norm-ed
embedding, so its entries average |x| = 1 by construction). Per block, over real steps:
the mean |x| and the standard deviation across steps (mean over features); also the
mean Q of the taken actions. A block with a large mean and no spread is a constant the
hypernetworks read at a scale the state does not have. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import OmegaConf

from jlmarl import train
from jlmarl.algos import mmsa
from jlmarl.config import load_config
from jlmarl.nets.agents import episode_inputs
from jlmarl.nets.recurrent import unroll
from jlmarl.nets.world_model import MmsaWorldModel


def block_stats(x: np.ndarray, valid: np.ndarray) -> dict:
    """x [B, T, D], valid bool [B, T] -> mean |x| and the spread across real steps."""
    rows = x[valid]
    return {"abs_mean": float(np.abs(rows).mean()), "step_std": float(rows.std(0).mean())}


def inspect(run_dir: Path, episodes: int) -> list[dict]:
    cfg = load_config(["resume=true", f"run_dir={run_dir}"])
    if cfg.algo.name != "mmsa" or not cfg.mmsa.world_model:
        raise SystemExit(f"{run_dir}: not an MMSA run with a world model")
    engine = train.build(cfg)
    seeds = [cfg.seed + k for k in range(cfg.num_seeds)]
    ckpt, abstract = train.open_checkpoints(cfg, run_dir, engine.init(engine.seed_keys(seeds)))
    carry, driver, chunk = ckpt.restore_latest(abstract)
    plain = OmegaConf.to_container(cfg, resolve=True)
    nets = mmsa.make_nets(engine.env.spec, plain["algo"], plain["mmsa"])
    out = []
    for k, seed in enumerate(seeds):
        ts = jax.tree.map(lambda x, k=k: x[k], carry.train_state)
        buf = jax.tree.map(lambda x, k=k: x[k], carry.buffer)
        newest = (int(buf.pos) - 1 - np.arange(min(episodes, int(buf.size)))) % buf.capacity
        batch = jax.tree.map(lambda x, i=newest: x[i], buf.data)
        inputs = episode_inputs(batch.obs, batch.actions, nets.spec.n_actions)
        online = jnp.concatenate([inputs, mmsa.agent_features(nets, ts.frozen_sale, batch.obs)], -1)
        hs, q = unroll(nets.agent, ts.params["agent"], online, with_hidden=True)
        # the posterior mean and its rollout, as the update and the joint-Q evaluation compute them
        mean, _ = nets.model.apply(
            ts.params["model"], hs.reshape(*hs.shape[:2], -1), method=MmsaWorldModel.infer
        )
        rollout = mmsa.imagined_rollout(nets.model, ts.params["model"], mean, nets.horizon)
        mixer_in = nets.mixer_conditioning(batch.state, rollout)[:, :-1]
        taken = jnp.take_along_axis(q[:, :-1], batch.actions[..., None], -1)[..., 0]  # [B, T, n]
        q_tot = nets.mixer.apply(ts.params["mixer"], taken, mixer_in)
        rollout = np.asarray(rollout)[:, :-1]
        valid = np.asarray(batch.mask)
        d = nets.model.latent_dim
        row = {
            "run_dir": str(run_dir),
            "seed": seed,
            "checkpoint_chunk": int(chunk),
            "env_steps": int(driver["env_steps"][k]),
            "episodes_read": len(newest),
            "q_tot_taken_mean": float(np.asarray(q_tot)[valid].mean()),
            "return_mean": float((np.asarray(batch.reward) * valid).sum(1).mean()),
            "state": block_stats(np.asarray(batch.state)[:, :-1], valid),
        }
        for j in range(nets.horizon + 1):
            row[f"s_hat_t+{j}"] = block_stats(rollout[..., j * d : (j + 1) * d], valid)
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mmsa_mixer_inputs.json"))
    args = parser.parse_args()
    rows = [r for d in args.run_dirs for r in inspect(d, args.episodes)]
    blocks = [k for k in rows[0] if k == "state" or k.startswith("s_hat")]
    print(
        f"{'run':<48} {'seed':>4} {'steps':>7} {'return':>6} {'Q_tot':>6}  "
        + "  ".join(f"{b:>15}" for b in blocks)
    )
    print(
        f"{'':<48} {'':>4} {'':>7} {'':>6} {'':>6}  " + "  ".join(f"{'|x|   step std':>15}" for _ in blocks)
    )
    for r in rows:
        cells = "  ".join(f"{r[b]['abs_mean']:>7.3f} {r[b]['step_std']:>7.3f}" for b in blocks)
        name = Path(r["run_dir"]).name[:48]
        values = f"{r['env_steps']:>7} {r['return_mean']:>6.3f} {r['q_tot_taken_mean']:>6.3f}"
        print(f"{name:<48} {r['seed']:>4} {values}  {cells}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/mmsa_mixer_inputs.py " + " ".join(map(str, args.run_dirs))
    payload = {
        "command": command,
        "episodes": args.episodes,
        "load_average": os.getloadavg()[0],
        "rows": rows,
    }
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
