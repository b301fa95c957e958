"""One QMIX update under glibc's malloc and under tcmalloc, jlmarl and PyTorch side by side.

    python benchmarks/allocator.py [--n 3 8] [--T 10 50] [--rounds 2] [--budget 3]
                                   [--out benchmarks/results/allocator.json]

XLA's CPU runtime allocates each call's temporary buffers afresh; under glibc the large
ones are new mappings whose pages the kernel zero-fills on first touch, every call. This
times update_speed.py's QMIX update (jlmarl's, and its PyMARL-structured PyTorch twin) in
child processes, alternately under each allocator (tcmalloc through LD_PRELOAD with the
settings `python -m jlmarl.<command>` runs under by default: jlmarl/allocator.py), and counts per update
the minor page faults and the system CPU seconds (getrusage). Each figure: the median over
`--budget` seconds of updates, the best of `--rounds` rounds. Needs tcmalloc
(`apt install libtcmalloc-minimal4`) and torch (`pip install -e '.[bench-torch]'`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import ab
import numpy as np
import torch
from update_speed import SHAPES, jlmarl_update, random_batch, torch_update  # a sibling script

from jlmarl import allocator

ALLOCATORS = ("system", "tcmalloc")


def child(n: int, t: int, batch: int, budget: float) -> dict:
    """This process's per-update figures for both implementations (run under one allocator)."""
    _, obs, state, a = SHAPES[n]
    data = random_batch(np.random.default_rng(0), batch, t, n, obs, state, a)
    torch.set_num_threads(os.cpu_count())
    steps = {
        "jlmarl": jlmarl_update(data, n, obs, state, a, t)[0],
        "torch_pymarl": torch_update(data, n, state, a, fused=False),
    }
    out = {}
    for name, step in steps.items():
        step()
        times, r0, start = [], resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        while len(times) < 3 or time.perf_counter() - start < budget:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        out[name] = {
            "seconds": statistics.median(times),
            "updates": len(times),
            "minor_faults_per_update": (r1.ru_minflt - r0.ru_minflt) / len(times),
            "system_cpu_s_per_update": (r1.ru_stime - r0.ru_stime) / len(times),
            "user_cpu_s_per_update": (r1.ru_utime - r0.ru_utime) / len(times),
        }
    return out


def run_child(allocator_name: str, n: int, t: int, batch: int, budget: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env.update(JAX_PLATFORMS="cpu", JLMARL_ALLOCATOR="system")
    if allocator_name == "tcmalloc":  # the environment `python -m jlmarl.<command>` re-executes with
        env = allocator.preload_env({**env, "JLMARL_ALLOCATOR": "auto"})
    args = [sys.executable, __file__, "--child", "--n", str(n), "--T", str(t)]
    args += ["--batch", str(batch), "--budget", str(budget)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[3, 8])
    parser.add_argument("--T", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of updates per implementation")
    parser.add_argument("--out", default="benchmarks/results/allocator.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.n[0], args.T[0], args.batch, args.budget)))
        return
    found = allocator.preload_env({"JLMARL_ALLOCATOR": "auto"})
    if found is None:
        raise SystemExit("benchmarks/allocator.py needs tcmalloc: apt install libtcmalloc-minimal4")
    load = os.getloadavg()[0]
    rows = []
    print(
        f"{'n':>2} {'T':>4} {'impl':>13} {'system ms':>9} {'tcmalloc ms':>11} {'ratio':>6} "
        f"{'faults/update':>21}"
    )
    for n in args.n:
        for t in args.T:
            best: dict = {}
            for _ in range(args.rounds):  # alternate, so a burst of other load hits both
                for alloc in ALLOCATORS:
                    for impl, r in run_child(alloc, n, t, args.batch, args.budget).items():
                        key = (impl, alloc)
                        if key not in best or r["seconds"] < best[key]["seconds"]:
                            best[key] = r
            for impl in ("jlmarl", "torch_pymarl"):
                sys_r, tc_r = best[(impl, "system")], best[(impl, "tcmalloc")]
                row = {
                    "n_agents": n,
                    "T": t,
                    "batch": args.batch,
                    "impl": impl,
                    "system": sys_r,
                    "tcmalloc": tc_r,
                }
                row["speedup"] = sys_r["seconds"] / tc_r["seconds"]
                rows.append(row)
                print(
                    f"{n:>2} {t:>4} {impl:>13} {sys_r['seconds'] * 1e3:>9.1f} {tc_r['seconds'] * 1e3:>11.1f} "
                    f"{row['speedup']:>5.2f}x {sys_r['minor_faults_per_update']:>10.0f} -> "
                    f"{tc_r['minor_faults_per_update']:>7.0f}",
                    flush=True,
                )
    out = {
        "command": f"python benchmarks/allocator.py --n {' '.join(map(str, args.n))} "
        f"--T {' '.join(map(str, args.T))} --batch {args.batch} --rounds {args.rounds} "
        f"--budget {args.budget} --out {args.out}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_cpu_model()}",
        "tcmalloc": allocator.active(found),
        "tcmalloc_settings": {k: found[k] for k in allocator.TCMALLOC_DEFAULTS},
        "load_average_start": load,
        "load_average_end": os.getloadavg()[0],
        "rows": rows,
    }
    ab.write(Path(args.out), out)


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown cpu"
    return next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown cpu"
    )


if __name__ == "__main__":
    main()
