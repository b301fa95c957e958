"""One QMIX update in jlmarl beside the same update written in PyTorch, in one process.

    python benchmarks/update_speed.py [--T 10 50 100] [--n 2 3 8] [--batch 128] [--budget 6]
                                      [--out benchmarks/results/update_speed.json]

The update is PyMARL2's QMIX step: a GRU-64 agent (fc1 -> GRUCell -> fc2, inputs
[obs, onehot(last action), onehot(id)]) unrolled over T+1 steps for the online and the
target network, a QMIX mixer (embed 32, two-layer hypernetworks of width 64) on the
state, double-Q TD(lambda = 0.6) targets, masked squared error, Adam with a gradient
clip of 10. Shapes follow SMAC maps with n agents (2m_vs_1z, 3m, 8m: their obs, state
and action sizes), batch 128 episodes of T steps.

Three implementations of the same computation, timed alternately (median of repeated
updates, best of two rounds; each gets `--budget` seconds per shape; PyTorch at each of
`--torch-threads` thread counts, reported at its best):
  jlmarl        algo=qmix's own jitted update (jlmarl.algos), parameters donated
  torch_pymarl  the PyMARL2 learner's structure: a Python loop over time building the
                step's inputs (`_build_inputs`: obs, last one-hot action, id) and calling
                the agent's GRUCell, TD(lambda) by a backwards loop
  torch_fused   the fastest PyTorch we could write for it: the inputs built and fc1
                applied over all steps at once, torch.nn.GRU over the sequence, fc2 over
                all steps
and, for the roofline, jlmarl's matrix-product FLOPs per update (counted on the jaxpr,
jlmarl.core.flops: XLA's cost analysis, reported beside it, counts each scan body once and so
leaves out the GRU's per-step products), achieved GFLOP/s, and this CPU's measured float32
matmul peak (a 2048^2 jnp.dot).

torch is a benchmark-only extra (`pip install -e '.[bench-torch]'`), never installed by
`make install`, `make test` or CI. Writes JSON (every figure, machine, load average).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jlmarl import algos
from jlmarl.config import load_config
from jlmarl.core.algo import UpdateContext
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.core.flops import count_matmul_flops
from jlmarl.envs.base import EnvSpec

try:
    import torch
    from torch import nn
except ImportError as e:  # an optional extra: say how to get it
    raise SystemExit("benchmarks/update_speed.py needs torch: pip install -e '.[bench-torch]'") from e

# n agents -> (SMAC map, obs_dim, state_dim, n_actions), from SMAC's map definitions
SHAPES = {2: ("2m_vs_1z", 16, 26, 7), 3: ("3m", 30, 48, 9), 8: ("8m", 80, 168, 14)}
HIDDEN, EMBED, HYPER, GAMMA, LAM, LR, CLIP = 64, 32, 64, 0.99, 0.6, 1e-3, 10.0


def random_batch(rng: np.random.Generator, b: int, t: int, n: int, obs: int, state: int, a: int) -> dict:
    """Full-length episodes (every step inside), the last step a termination."""
    terminated = np.zeros((b, t), bool)
    terminated[:, -1] = True
    return {
        "obs": rng.standard_normal((b, t + 1, n, obs), np.float32),
        "state": rng.standard_normal((b, t + 1, state), np.float32),
        "avail": rng.random((b, t + 1, n, a)) < 0.8,
        "actions": rng.integers(0, a, (b, t, n)).astype(np.int32),
        "reward": rng.standard_normal((b, t), np.float32),
        "terminated": terminated,
        "mask": np.ones((b, t), bool),
    }


def timed(fn, budget_s: float, min_reps: int = 3) -> tuple[float, int]:
    """Median seconds per call after one warm-up call; at least min_reps calls."""
    fn()
    times, start = [], time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


# --- jlmarl -----------------------------------------------------------------------------


def jlmarl_update(data: dict, n: int, obs: int, state: int, a: int, t: int):
    spec = EnvSpec("update_speed", n, obs, state, a, t)
    algo = algos.build("qmix", spec, load_config(["algo=qmix", "algo.td_lambda=0.6"]))
    batch = EpisodeBatch(**{k: jnp.asarray(v) for k, v in data.items()})
    ctx = UpdateContext(jnp.int32(0), jnp.int32(0), jnp.int32(0), jnp.int32(0))
    key = jax.random.PRNGKey(0)
    update = jax.jit(algo.update, donate_argnums=0)
    ts = algo.init(jax.random.PRNGKey(1))
    compiled = update.lower(ts, batch, key, ctx).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = count_matmul_flops(algo.update, ts, batch, key, ctx).total
    box = [jax.tree.map(jnp.copy, algo.init(jax.random.PRNGKey(1)))]  # target = params: own buffers

    def step():
        box[0], metrics = compiled(box[0], batch, key, ctx)
        jax.block_until_ready(metrics["loss"])

    return step, flops, float(cost.get("flops", float("nan")))


def matmul_peak_gflops(size: int = 2048, budget_s: float = 3.0) -> float:
    x = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    dot = jax.jit(lambda m: m @ m)
    seconds, _ = timed(lambda: dot(x).block_until_ready(), budget_s)
    return 2 * size**3 / seconds / 1e9


# --- PyTorch ----------------------------------------------------------------------------


class TorchAgent(nn.Module):
    def __init__(self, d_in: int, a: int, fused: bool):
        super().__init__()
        self.fc1, self.fc2, self.fused = nn.Linear(d_in, HIDDEN), nn.Linear(HIDDEN, a), fused
        self.rnn = nn.GRU(HIDDEN, HIDDEN, batch_first=True) if fused else nn.GRUCell(HIDDEN, HIDDEN)

    def forward(self, obs: torch.Tensor, last_onehot: torch.Tensor) -> torch.Tensor:
        """obs [B, T+1, n, O], last_onehot [B, T+1, n, A] (the previous step's one-hot action,
        zeros at t = 0) -> q [B, T+1, n, A]. The inputs [obs, last action, id] are built
        inside, as PyMARL's `_build_inputs` does for every step of every forward."""
        b, t1, n, _ = obs.shape
        if self.fused:
            ids = torch.eye(n).expand(b, t1, n, n)
            inputs = torch.cat([obs, last_onehot, ids], dim=-1)
            x = torch.relu(self.fc1(inputs.transpose(1, 2).reshape(b * n, t1, -1)))
            h, _ = self.rnn(x)
            return self.fc2(h).reshape(b, n, t1, -1).transpose(1, 2)
        h, outs = obs.new_zeros(b * n, HIDDEN), []
        ids = torch.eye(n).unsqueeze(0).expand(b, -1, -1)
        for step in range(t1):  # PyMARL's mac.forward, one call per step
            inputs = torch.cat([obs[:, step], last_onehot[:, step], ids], dim=-1).reshape(b * n, -1)
            h = self.rnn(torch.relu(self.fc1(inputs)), h)
            outs.append(self.fc2(h).view(b, n, -1))
        return torch.stack(outs, dim=1)


class TorchQMixer(nn.Module):
    def __init__(self, n: int, state: int):
        super().__init__()
        self.n = n
        self.hyper_w1 = nn.Sequential(nn.Linear(state, HYPER), nn.ReLU(), nn.Linear(HYPER, n * EMBED))
        self.hyper_w2 = nn.Sequential(nn.Linear(state, HYPER), nn.ReLU(), nn.Linear(HYPER, EMBED))
        self.hyper_b1 = nn.Linear(state, EMBED)
        self.v = nn.Sequential(nn.Linear(state, EMBED), nn.ReLU(), nn.Linear(EMBED, 1))

    def forward(self, qs: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        lead = qs.shape[:-1]
        qs, s = qs.reshape(-1, 1, self.n), s.reshape(-1, s.shape[-1])
        w1 = self.hyper_w1(s).abs().view(-1, self.n, EMBED)
        hidden = torch.nn.functional.elu(torch.bmm(qs, w1) + self.hyper_b1(s).view(-1, 1, EMBED))
        w2 = self.hyper_w2(s).abs().view(-1, EMBED, 1)
        return (torch.bmm(hidden, w2) + self.v(s).view(-1, 1, 1)).view(lead)


def torch_td_lambda(reward, terminated, mask, target_q):
    """PyMARL2's build_td_lambda_targets, backwards over time."""
    ret = target_q.new_zeros(target_q.shape)
    ret[:, -1] = target_q[:, -1] * (1 - terminated.sum(dim=1))
    for t in range(ret.shape[1] - 2, -1, -1):
        ret[:, t] = LAM * GAMMA * ret[:, t + 1] + mask[:, t] * (
            reward[:, t] + (1 - LAM) * GAMMA * target_q[:, t + 1] * (1 - terminated[:, t])
        )
    return ret[:, :-1]


def torch_update(data: dict, n: int, state: int, a: int, fused: bool):
    torch.manual_seed(0)
    b, t1 = data["obs"].shape[:2]
    last = np.concatenate([np.full_like(data["actions"][:, :1], -1), data["actions"]], axis=1)
    # what PyMARL's replay holds: observations and one-hot actions (made when stored)
    last_onehot = torch.from_numpy(np.eye(a, dtype=np.float32)[last] * (last >= 0)[..., None])
    obs = torch.from_numpy(data["obs"])
    st = torch.from_numpy(data["state"])
    avail = torch.from_numpy(data["avail"])
    actions = torch.from_numpy(data["actions"]).long()
    reward, mask = torch.from_numpy(data["reward"]), torch.from_numpy(data["mask"]).float()
    terminated = torch.from_numpy(data["terminated"]).float()
    d_in = obs.shape[-1] + a + n
    agent, mixer = TorchAgent(d_in, a, fused), TorchQMixer(n, state)
    target_agent, target_mixer = TorchAgent(d_in, a, fused), TorchQMixer(n, state)
    target_agent.load_state_dict(agent.state_dict())
    target_mixer.load_state_dict(mixer.state_dict())
    params = [*agent.parameters(), *mixer.parameters()]
    optimiser = torch.optim.Adam(params, lr=LR)

    def step():
        q = agent(obs, last_onehot)
        chosen = torch.gather(q[:, :-1], dim=3, index=actions.unsqueeze(3)).squeeze(3)
        with torch.no_grad():
            q_target = target_agent(obs, last_onehot)
            greedy = q.detach().masked_fill(~avail, -1e10).argmax(dim=3, keepdim=True)
            q_next = torch.gather(q_target, 3, greedy).squeeze(3)
            targets = torch_td_lambda(reward, terminated, mask, target_mixer(q_next, st))
        q_tot = mixer(chosen, st[:, :-1])
        loss = (((q_tot - targets) * mask) ** 2).sum() / mask.sum()
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        optimiser.step()

    return step


def measure(n: int, t: int, batch: int, budget: float, torch_threads: list[int]) -> dict:
    name, obs, state, a = SHAPES[n]
    data = random_batch(np.random.default_rng(0), batch, t, n, obs, state, a)
    t0 = time.perf_counter()
    jl_step, flops, xla_flops = jlmarl_update(data, n, obs, state, a, t)
    compile_s = time.perf_counter() - t0
    steps = {"jlmarl": (None, jl_step)}
    for fused in (False, True):
        for threads in torch_threads:
            label = f"torch_{'fused' if fused else 'pymarl'}@{threads}"
            steps[label] = (threads, torch_update(data, n, state, a, fused=fused))
    per_round = {k: [] for k in steps}
    for _ in range(2):  # alternate, so a burst of other load hits every implementation
        for k, (threads, fn) in steps.items():
            if threads:
                torch.set_num_threads(threads)
            per_round[k].append(timed(fn, budget / 2)[0])
    seconds = {k: min(v) for k, v in per_round.items()}
    for kind in ("pymarl", "fused"):  # PyTorch at its best thread count
        seconds[f"torch_{kind}"] = min(v for k, v in seconds.items() if k.startswith(f"torch_{kind}@"))
    jl = seconds["jlmarl"]
    return {
        "map": name,
        "n_agents": n,
        "T": t,
        "batch": batch,
        "seconds": seconds,
        "speedup_vs_torch_pymarl": seconds["torch_pymarl"] / jl,
        "speedup_vs_torch_fused": seconds["torch_fused"] / jl,
        "jlmarl_compile_s": compile_s,
        "jlmarl_gflop": flops / 1e9,  # matrix products, counted on the jaxpr
        "xla_cost_gflop": xla_flops / 1e9,  # XLA's cost analysis: scan bodies once
        "jlmarl_gflops_per_s": flops / jl / 1e9,
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--T", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--n", type=int, nargs="+", default=[2, 3, 8], choices=sorted(SHAPES))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--budget", type=float, default=6.0, help="seconds of timing per implementation")
    parser.add_argument(
        "--torch-threads",
        type=int,
        nargs="+",
        default=[1, os.cpu_count()],
        help="PyTorch is timed at each and reported at its best (OpenMP's spinning threads "
        "lose badly to any other load on a small machine)",
    )
    parser.add_argument("--out", default="benchmarks/results/update_speed.json")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    peak = matmul_peak_gflops()
    rows = []
    print(f"matmul peak (float32, 2048^2, jax): {peak:.1f} GFLOP/s; load average {load:.2f}")
    print(
        f"{'map':>9} {'T':>4} {'jlmarl s':>9} {'pymarl s':>9} {'fused s':>8} {'vs pymarl':>9} "
        f"{'vs fused':>8} {'GFLOP/s':>8} {'% peak':>6}"
    )
    for n in args.n:
        for t in args.T:
            r = measure(n, t, args.batch, args.budget, args.torch_threads)
            r["percent_of_peak"] = 100 * r["jlmarl_gflops_per_s"] / peak
            rows.append(r)
            s = r["seconds"]
            print(
                f"{r['map']:>9} {t:>4} {s['jlmarl']:>9.4f} {s['torch_pymarl']:>9.4f} "
                f"{s['torch_fused']:>8.4f} "
                f"{r['speedup_vs_torch_pymarl']:>8.2f}x {r['speedup_vs_torch_fused']:>7.2f}x "
                f"{r['jlmarl_gflops_per_s']:>8.2f} {r['percent_of_peak']:>5.1f}%",
                flush=True,
            )
    out = {
        "command": "python benchmarks/update_speed.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "versions": {"jax": jax.__version__, "torch": torch.__version__},
        "ld_preload": os.environ.get("LD_PRELOAD", ""),  # both sides run under it (allocator.py)
        "load_average_start": load,
        "load_average_end": os.getloadavg()[0],
        "matmul_peak_gflops": peak,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
