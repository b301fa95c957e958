"""LIMARL's inference ablation on the digit classification game (seed 000, appendix E, Table 4).

    python benchmarks/limarl_digits.py [--episodes 1500] [--srm-steps 1500] [--rolim-steps 1500]
                                       [--latent-dim 16] [--frozen-decoder] [--seeds 0 1 2 3 4]
                                       [--out benchmarks/results/limarl_digits]

Each seed (its own data draw, initial values and minibatches) is written to
<out>/seed_<k>.json as soon as it finishes, and a rerun reuses the seeds already there
(resumable); <out>/summary.json holds every metric's mean and 95% CI (Student t over
the seeds) per configuration, and the ordering checks of Table 4.

Episodes of `digits_game` (2 agents, 8 steps, each pixel shown with p = 0.2 through a
fresh private mask) are collected with random labels from the train split (80%) and the
test split (20%) of the images. For each of the six Table 4 configurations
(lambda_KL, lambda_align), an SRM (eq. 1, with that lambda_KL) is trained on the train
images, then ROLIM (eq. 2, lambda_rec = 1, encoder frozen) on the train episodes, with
LIMARL's own training functions (jlmarl.algos.limarl). Table 4 is the paper's
"TrainDecoder" ablation: the decoder g keeps learning with ROLIM (starting from the
SRM's), so without alignment nothing ties z_hat to the SRM's latent and it can drift or
collapse under the KL term. --frozen-decoder keeps g frozen as in LIMARL itself (then
the reconstruction term alone anchors z_hat, and alignment matters much less).
On the test episodes it prints:

  recon  ||g(z_hat) - s||^2 / pixels (per-pixel MSE of the decoded inferred latent)
  align  ||mu_hat - mu||^2 (summed over latent dims)
  KL     KL(N(mu_hat, sigma_hat^2) || N(0, I)) (summed over latent dims)
  acc    accuracy of a logistic-regression digit classifier (fit on the train images)
         applied to the decoded state g(mu_hat) at the last step
  var    variance of mu_hat over the test episodes, mean over latent dims

averaged over agents and the steps of the episode (acc: last step only).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.linear_model import LogisticRegression

from jlmarl import envs
from jlmarl.algos import limarl
from jlmarl.core.rollout import UniformRandomPolicy, run_episodes
from jlmarl.nets.agents import episode_inputs
from jlmarl.nets.gaussian import kl_std_normal

CONFIGS = [  # (name, lambda_KL, lambda_align), as in Table 4
    ("RAE", 0.0, 0.0),
    ("RVAE", 0.001, 0.0),
    ("RVAE", 0.01, 0.0),
    ("ROLIM", 0.01, 1.0),
    ("ROLIM", 0.001, 1.0),
    ("ROLIM", 0.0, 1.0),
]


def collect(env, n: int, key) -> object:
    batch, _ = jax.jit(lambda k: run_episodes(env, UniformRandomPolicy(), None, k, n, 0, False))(key)
    return batch


def train_config(model, train, kl_w: float, align: float, args, key, seed: int):
    srm_opt, rolim_opt = optax.adam(args.lr), optax.adam(args.lr)
    rep = model.init(key)
    srm = {"encoder": rep["encoder"], "decoder": rep["decoder"]}
    weights = jnp.array([align, 1.0, kl_w])
    chunk, train_decoder = 50, not args.frozen_decoder
    srm_fn = jax.jit(lambda r, o, b, k: limarl.srm_steps(model, srm_opt, chunk, r, o, b, k, kl_w))
    rolim_fn = jax.jit(
        lambda r, o, b, k: limarl.rolim_steps(model, rolim_opt, chunk, r, o, b, k, weights, train_decoder)
    )
    s_state = srm_opt.init(srm)
    rng = np.random.default_rng(seed)
    for fn, steps in ((srm_fn, args.srm_steps), (rolim_fn, args.rolim_steps)):
        if fn is rolim_fn:  # after the SRM: a trained decoder starts from the SRM's
            r_state = rolim_opt.init(limarl.rolim_trained_params(rep, train_decoder))
        for _ in range(0, steps, chunk):
            idx = rng.choice(train.size, args.minibatch, replace=False)
            mb = jax.tree.map(lambda x, idx=idx: x[idx], train)
            key, k = jax.random.split(key)
            if fn is srm_fn:
                rep, s_state, _ = fn(rep, s_state, mb, k)
            else:
                rep, r_state, _ = fn(rep, r_state, mb, k)
    return rep


def evaluate(model, rep, test, classifier, images, labels) -> dict:
    t = test.reward.shape[1]
    inputs = episode_inputs(test.obs, test.actions, model.spec.n_actions)
    mu_hat, logvar_hat = jax.jit(model.infer)(rep, inputs)
    mu_hat, logvar_hat = mu_hat[:, :t], logvar_hat[:, :t]  # [B, T, n, d]
    state = test.state[:, :t]
    mu, _ = model.encode(rep, state)
    decoded = model.decoder.apply(rep["decoder"], mu_hat)  # [B, T, n, S]
    last = np.asarray(decoded[:, -1]).reshape(-1, state.shape[-1])
    # the episode's label: its (exact) image among the split's images
    shown = np.asarray(state[:, -1])
    idx = ((shown[:, None, :] - images[None]) ** 2).sum(-1).argmin(1)
    truth = np.repeat(labels[idx], model.spec.n_agents)
    return {
        "recon": float(((decoded - state[:, :, None]) ** 2).mean()),
        "align": float(((mu_hat - mu[:, :, None]) ** 2).sum(-1).mean()),
        "kl": float(kl_std_normal(mu_hat, logvar_hat).mean()),
        "acc": float((classifier.predict(last) == truth).mean()),
        "var": float(np.asarray(mu_hat).reshape(-1, mu_hat.shape[-1]).var(0).mean()),
    }


def ci95(values) -> dict:
    """Mean and half-width of the 95% Student-t interval over seeds (nan width for one seed)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else math.nan
    return {"mean": float(x.mean()), "ci95": half, "n": len(x)}


METRICS = ("recon", "align", "kl", "acc", "var")


def aggregate(per_seed: list[dict]) -> dict:
    """Per configuration, every metric's mean and CI over the seeds, and Table 4's ordering
    (with alignment: lower recon and align, higher acc than every config without)."""
    rows = []
    for i, (name, kl_w, align) in enumerate(CONFIGS):
        row = {"config": name, "lambda_kl": kl_w, "lambda_align": align}
        row.update({m: ci95([s["rows"][i][m] for s in per_seed]) for m in METRICS})
        rows.append(row)
    with_align = [r for r in rows if r["lambda_align"] > 0]
    without = [r for r in rows if r["lambda_align"] == 0]

    def ordered(metric, better):
        return all(better(a[metric]["mean"], b[metric]["mean"]) for a in with_align for b in without)

    checks = {
        "recon_lower_with_alignment": ordered("recon", lambda a, b: a < b),
        "align_lower_with_alignment": ordered("align", lambda a, b: a < b),
        "acc_higher_with_alignment": ordered("acc", lambda a, b: a > b),
    }
    return {"seeds": [s["seed"] for s in per_seed], "rows": rows, "checks": checks}


def run_seed(args, seed: int) -> dict:
    train_env, test_env = envs.make("digits_game", subset="train"), envs.make("digits_game", subset="test")
    key = jax.random.PRNGKey(seed)
    k_train, k_test, k_model = jax.random.split(key, 3)
    train, test = collect(train_env, args.episodes, k_train), collect(test_env, args.episodes // 4, k_test)
    classifier = LogisticRegression(max_iter=2000).fit(
        np.asarray(train_env.images), np.asarray(train_env.labels)
    )
    # Reference accuracy: the classifier on the true test images (what a perfect reconstruction would get).
    test_images, test_labels = np.asarray(test_env.images), np.asarray(test_env.labels)
    ceiling = float((classifier.predict(test_images) == test_labels).mean())
    model = limarl.LatentModel(train_env.spec, args.latent_dim, args.hidden, args.hidden)

    print(f"seed {seed}")
    print(f"{'configuration':<32} {'recon':>8} {'align':>10} {'KL':>10} {'acc %':>7} {'var':>9} {'s':>6}")
    rows = []
    for name, kl_w, align in CONFIGS:
        t0 = time.time()
        rep = train_config(model, train, kl_w, align, args, k_model, seed)
        r = {
            "config": name,
            "lambda_kl": kl_w,
            "lambda_align": align,
            **evaluate(model, rep, test, classifier, test_images, test_labels),
        }
        r["train_s"] = time.time() - t0
        rows.append(r)
        label = f"{name} (KL={kl_w:g}, align={align:g})"
        print(
            f"{label:<32} {r['recon']:>8.4f} {r['align']:>10.4f} {r['kl']:>10.3f} {100 * r['acc']:>7.2f} "
            f"{r['var']:>9.4f} {r['train_s']:>6.0f}",
            flush=True,
        )
    print(f"classifier on the true test images: {100 * ceiling:.2f}% (chance 10%)", flush=True)
    return {"seed": seed, "rows": rows, "classifier_on_true_images": ceiling}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=1500, help="train episodes (test: a quarter)")
    parser.add_argument("--srm-steps", type=int, default=1500)
    parser.add_argument("--rolim-steps", type=int, default=1500)
    parser.add_argument("--minibatch", type=int, default=64, help="episodes per gradient step")
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--frozen-decoder",
        action="store_true",
        help="keep the SRM decoder frozen while ROLIM trains (LIMARL's eq. 2)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/limarl_digits"))
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("seeds", "out")}
    per_seed = []
    for seed in args.seeds:
        path = args.out / f"seed_{seed}.json"
        if path.exists():
            done = json.loads(path.read_text())
            if done["args"] != settings:
                raise SystemExit(f"{path} was run with {done['args']}, not {settings}; pick another --out")
            print(f"seed {seed}: reusing {path}", flush=True)
        else:
            done = {"args": settings, **run_seed(args, seed)}
            path.write_text(json.dumps(done, indent=1))
        per_seed.append(done)
    summary = {"args": settings, **aggregate(per_seed)}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nover seeds {summary['seeds']} (mean +- 95% CI)")
    for r in summary["rows"]:
        label = f"{r['config']} (KL={r['lambda_kl']:g}, align={r['lambda_align']:g})"
        cells = " ".join(f"{m} {r[m]['mean']:.4g}+-{r[m]['ci95']:.2g}" for m in METRICS)
        print(f"{label:<32} {cells}")
    print("Table 4 ordering:", summary["checks"])
    print(f"wrote {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()
