"""Where one update's time goes: XLA's own per-op timings, grouped by phase and network.

    python benchmarks/update_profile.py [--algos qmix limarl lsf_sac] [--env smax_3m]
                                        [--batch 128] [--T 50] [--reps 5] [--top K] [--out FILE]

Builds each learner as the CLI does (its defaults, `batch_size` = --batch), jits its
update on a random batch of --T steps (shapes of --env, in main training: past every
pre-training phase), runs it --reps times under `jax.profiler.trace` and reads the trace:
every op XLA ran (a fusion, a dot, ...) with its duration. Each op is attributed through
the op_name metadata JAX writes into the optimised HLO:
  phase    forward (inside jax.grad's jvp), backward (its transpose), outside the gradient
           (target networks, TD targets, the optimiser step and clipping)
  network  the first Flax module class on the op's name stack (RNNAgent, QMixer, ...);
           "scan body" for ops in a loop body with no module name (the GRU steps of the
           recurrent unrolls, whose cells lose their name inside lax.scan); "-" for the
           rest (losses, TD targets, the optimiser)
Ops that only contain others (while loops, conditionals, calls) are not counted: their
bodies' ops are. Beside each row, the matrix-product FLOPs of the same (phase, network),
counted on the jaxpr (jlmarl.core.flops; scan bodies once per step), and the update's
achieved GFLOP/s. Prints each learner's table (ms per update and share) and writes JSON.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import re
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jlmarl.config import load_config
from jlmarl.core.algo import UpdateContext
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.core.flops import count_matmul_flops
from jlmarl.train import build

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS = ("while", "conditional", "call", "async")
OP_NAME = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = .*?op_name="([^"]*)"', re.M)
MODULE = re.compile(r"\b([A-Z][A-Za-z0-9_]+)\b")


def random_batch(spec, b: int, t: int, key) -> EpisodeBatch:
    k = jax.random.split(key, 6)
    n = spec.n_agents
    extras = {
        name: jax.random.bernoulli(k[5], 0.5, (b, t + 1, *shape)).astype(dtype)
        for name, shape, dtype in spec.extras
    }
    return EpisodeBatch(
        obs=jax.random.normal(k[0], (b, t + 1, n, spec.obs_dim)),
        state=jax.random.normal(k[1], (b, t + 1, spec.state_dim)),
        avail=jnp.ones((b, t + 1, n, spec.n_actions), bool),
        actions=jax.random.randint(k[2], (b, t, n), 0, spec.n_actions),
        reward=jax.random.normal(k[3], (b, t)),
        terminated=jnp.zeros((b, t), bool),
        mask=jnp.ones((b, t), bool),
        extras=extras,
    )


def phase_of(op_name: str) -> str:
    if "transpose(" in op_name:
        return "backward"
    return "forward" if "jvp(" in op_name else "outside grad"


def network_of(op_name: str) -> str:
    found = MODULE.search(op_name.split("/", 1)[-1])
    if found:
        return found.group(1)
    # A module applied inside lax.scan (the GRU cells of our recurrent unrolls) loses its
    # name on the stack: its ops only say they run in a loop body.
    return "scan body" if "while/body" in op_name or "/scan" in op_name else "-"


def op_times(trace_dir: Path) -> dict[str, float]:
    """Total microseconds per op name over the trace's complete events."""
    (path,) = trace_dir.rglob("perfetto_trace.json.gz")
    events = json.load(gzip.open(path))
    events = events["traceEvents"] if isinstance(events, dict) else events
    totals = collections.defaultdict(float)
    for e in events:
        if e.get("ph") == "X":
            totals[e["name"]] += float(e.get("dur", 0.0))
    return totals


def update_args(algo_name: str, env: str, batch: int, t: int, overrides: tuple[str, ...] = ()):
    """(algo, (train_state, batch, key, ctx)): a learner built as the CLI builds it (with the
    given key=value overrides) and the arguments of one main-training update on a random
    batch of t steps."""
    engine = build(load_config([f"algo={algo_name}", f"env={env}", f"batch_size={batch}", *overrides]))
    spec, algo = engine.env.spec, engine.algo
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    ts = algo.init(keys[0])
    recent = random_batch(spec, algo.recent_episodes, t, keys[1]) if algo.recent_episodes else None
    ctx = UpdateContext(
        jnp.int32(10**6), jnp.int32(10**5), jnp.int32(10**5), jnp.int32(len(algo.phases)), recent
    )
    return algo, (ts, random_batch(spec, batch, t, keys[2]), keys[1], ctx)


def profile(algo_name: str, env: str, batch: int, t: int, reps: int, top: int = 0) -> dict:
    algo, args = update_args(algo_name, env, batch, t)
    compiled = jax.jit(algo.update).lower(*args).compile()
    names = dict(OP_NAME.findall(compiled.as_text()))
    jax.block_until_ready(compiled(*args))
    wall = []
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(reps):
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(*args))
                wall.append(time.perf_counter() - t0)
        totals = op_times(Path(tmp))
    table = collections.defaultdict(float)
    ops = []
    for op, us in totals.items():
        if op in names and not op.startswith(CONTAINERS):
            phase, network = phase_of(names[op]), network_of(names[op])
            table[(phase, network)] += us / reps / 1000.0
            ops.append(
                {"op": op, "ms": us / reps / 1000.0, "phase": phase, "network": network, "op_name": names[op]}
            )
    counted = sum(table.values())
    flops = collections.defaultdict(float)
    for scope, f in count_matmul_flops(algo.update, *args).by_scope.items():
        flops[(phase_of(scope), network_of("update/" + scope))] += f
    rows = [
        {"phase": p, "network": n, "ms": ms, "share": ms / counted, "gflop": flops.get((p, n), 0.0) / 1e9}
        for (p, n), ms in sorted(table.items(), key=lambda kv: -kv[1])
    ]
    update_ms = 1000.0 * float(np.median(wall))
    gflop = sum(flops.values()) / 1e9
    return {
        "algo": algo_name, "env": env, "batch": batch, "T": t,
        "update_ms": update_ms, "ops_ms": counted, "matmul_gflop": gflop,
        "gflops_per_s": gflop / update_ms * 1000.0, "rows": rows,
        "top_ops": sorted(ops, key=lambda o: -o["ms"])[:top],
    }  # fmt: skip


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algos", nargs="+", default=["qmix", "limarl", "lsf_sac"])
    parser.add_argument("--env", default="smax_3m")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--T", type=int, default=50)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--top", type=int, default=0, help="also list the K slowest ops with their op_name")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "update_profile.json")
    args = parser.parse_args()
    results = []
    for name in args.algos:
        r = profile(name, args.env, args.batch, args.T, args.reps, args.top)
        results.append(r)
        print(f"\n{name} on {args.env}, batch {args.batch} x T={args.T}: {r['update_ms']:.1f} ms per update "
              f"(ops timed: {r['ops_ms']:.1f} ms), {r['matmul_gflop']:.2f} GFLOP of matrix products, "
              f"{r['gflops_per_s']:.1f} GFLOP/s")  # fmt: skip
        print(f"  {'phase':<13} {'network':<24} {'ms':>8} {'share':>6} {'GFLOP':>7}")
        for row in r["rows"]:
            print(f"  {row['phase']:<13} {row['network']:<24} {row['ms']:>8.1f} {row['share']:>6.1%} "
                  f"{row['gflop']:>7.3f}")  # fmt: skip
        for op in r["top_ops"]:
            print(f"  {op['ms']:>7.2f} ms  {op['phase']:<13} {op['op']:<28} {op['op_name'][-110:]}")
    out = {
        "command": f"python benchmarks/update_profile.py --algos {' '.join(args.algos)} --env {args.env} "
        f"--batch {args.batch} --T {args.T} --reps {args.reps}" + (f" --top {args.top}" if args.top else ""),
        "machine": f"{os.uname().machine}, {os.cpu_count()} cores",
        "load_average": os.getloadavg()[0],
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
