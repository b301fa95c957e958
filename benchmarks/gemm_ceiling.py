"""What fraction of the CPU's matmul peak can a QMIX update's products reach at all?

    python benchmarks/gemm_ceiling.py [--n 2 3 8] [--T 50] [--batch 128] [--budget 2]
                                      [--out benchmarks/results/gemm_ceiling.json]

update_speed.py reports the update's GFLOP/s against a 2048^2 product's. The update's
products are not that shape: every one is tall and skinny (a contraction of 64-102 over
B x (T+1) x n rows, or a 64 x 192 hidden product per scan step), and such products are
bound by memory and call overhead, not by the multiply units. This times each of the
update's products alone, at its own shape, in jax (one jitted dot), numpy (its BLAS) and
PyTorch, and reports the best of the three as that shape's ceiling: the roofline that
update_speed's GFLOP/s should be read against.

Shapes (PyMARL2's QMIX at batch B, T+1 steps, n agents of a SMAC map, GRU width 64):
  fc1          [R, D] @ [D, 64]        R = B (T+1) n rows, D = obs + actions + n
  gru_in       [R, 64] @ [64, 192]     the GRU's input-side gates over all steps
  fc2          [R, 64] @ [64, A]
  gru_hidden   [B n, 64] @ [64, 192]   one step of the scan (the update does 2 (T+1) of them)
  d_fc1        [D, R] @ [R, 64]        the kernel gradients: a contraction over the rows
  d_gru_in     [64, R] @ [R, 192]
torch is a benchmark-only extra (`pip install -e '.[bench-torch]'`).
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import ab
import jax
import jax.numpy as jnp
import numpy as np
from update_speed import HIDDEN, SHAPES, matmul_peak_gflops, timed  # benchmarks/ is the script's folder

import jlmarl  # noqa: F401  (the engine's XLA flags, as every run has them)

try:
    import torch
except ImportError as e:
    raise SystemExit("benchmarks/gemm_ceiling.py needs torch: pip install -e '.[bench-torch]'") from e


def products(n: int, t: int, batch: int) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
    _, obs, _, a = SHAPES[n]
    rows, d, h = batch * (t + 1) * n, obs + a + n, HIDDEN
    return {
        "fc1": ((rows, d), (d, h)),
        "gru_in": ((rows, h), (h, 3 * h)),
        "fc2": ((rows, h), (h, a)),
        "gru_hidden": ((batch * n, h), (h, 3 * h)),
        "d_fc1": ((d, rows), (rows, h)),
        "d_gru_in": ((h, rows), (rows, 3 * h)),
    }


def time_product(lhs: tuple[int, int], rhs: tuple[int, int], budget: float, threads: int) -> dict:
    rng = np.random.default_rng(0)
    # the kernel gradients' left operand arrives stored [R, D] and is read as its transpose
    transposed = lhs[0] < lhs[1]
    x = rng.standard_normal(lhs[::-1] if transposed else lhs, np.float32)
    w = rng.standard_normal(rhs, np.float32)
    dot = jax.jit((lambda u, v: u.T @ v) if transposed else (lambda u, v: u @ v))
    jx, jw = jnp.asarray(x), jnp.asarray(w)
    x_np = x.T if transposed else x
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    tx = tx.T if transposed else tx
    torch.set_num_threads(threads)
    seconds = {
        "jax": timed(lambda: dot(jx, jw).block_until_ready(), budget)[0],
        "numpy": timed(lambda: x_np @ w, budget)[0],
        f"torch@{threads}": timed(lambda: tx @ tw, budget)[0],
    }
    gflop = 2 * lhs[0] * lhs[1] * rhs[1] / 1e9
    return {
        "lhs": lhs,
        "rhs": rhs,
        "gflop": gflop,
        "seconds": seconds,
        "gflops_per_s": {k: gflop / s for k, s in seconds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[2, 3, 8], choices=sorted(SHAPES))
    parser.add_argument("--T", type=int, default=50)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timing per library")
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", default="benchmarks/results/gemm_ceiling.json")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    peak = matmul_peak_gflops()
    print(f"matmul peak (float32, 2048^2, jax): {peak:.1f} GFLOP/s; load average {load:.2f}")
    print(
        f"{'map':>9} {'product':>11} {'shape':>26} {'jax':>7} {'numpy':>7} {'torch':>7} {'best % peak':>11}"
    )
    rows = []
    for n in args.n:
        for name, (lhs, rhs) in products(n, args.T, args.batch).items():
            r = time_product(lhs, rhs, args.budget, args.torch_threads)
            best = max(r["gflops_per_s"].values())
            r.update(map=SHAPES[n][0], n_agents=n, product=name, best_percent_of_peak=100 * best / peak)
            rows.append(r)
            g = list(r["gflops_per_s"].values())
            shape = f"{lhs[0]}x{lhs[1]} @ {rhs[0]}x{rhs[1]}"
            print(
                f"{r['map']:>9} {name:>11} {shape:>26} {g[0]:>7.1f} {g[1]:>7.1f} {g[2]:>7.1f} "
                f"{r['best_percent_of_peak']:>10.1f}%",
                flush=True,
            )
    out = {
        "command": f"python benchmarks/gemm_ceiling.py --n {' '.join(map(str, args.n))} --T {args.T} "
        f"--batch {args.batch} --budget {args.budget} --torch-threads {args.torch_threads} --out {args.out}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "versions": {"jax": jax.__version__, "numpy": np.__version__, "torch": torch.__version__},
        "load_average_start": load,
        "load_average_end": os.getloadavg()[0],
        "matmul_peak_gflops": peak,
        "units": "gflops_per_s: GFLOP/s at the median time; best_percent_of_peak: the best library's",
        "rows": rows,
    }
    ab.write(Path(args.out), out)


if __name__ == "__main__":
    main()
