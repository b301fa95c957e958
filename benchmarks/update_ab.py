"""One update of each learner in two checkouts (or under two XLA flag sets), timed in
alternated fresh processes.

    python benchmarks/update_ab.py (--old /path/to/old_checkout | --flags="XLA FLAGS")
                                   [--algos qmix vdfd mmsa] [--env smax_3m] [--batch 128]
                                   [--T 50] [--rounds 3] [--calls 15] [--out FILE]

With --flags both sides run this checkout; the new side's XLA_FLAGS gain the given flags
(after jlmarl's own, which `import jlmarl` adds unless XLA_FLAGS names them).

Each process runs in one checkout (its own code, imported from its working directory),
builds the learner as the CLI does and jits its update on a random batch of --T steps
(`update_profile.update_args` of that checkout), then prints the median of --calls calls
after one warm-up. The two checkouts alternate, --rounds times per learner, so that drift
in the machine's speed hits both alike. Prints each learner's medians over rounds and
writes JSON with every process's figure and both commits.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import ab

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys, time, statistics, jax
sys.path.insert(0, "benchmarks")
from update_profile import update_args
algo, args = update_args({algo!r}, {env!r}, {batch}, {t})
compiled = jax.jit(algo.update).lower(*args).compile()
jax.block_until_ready(compiled(*args))
times = []
for _ in range({calls}):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
print("MS", 1000.0 * statistics.median(times))
"""


def one_process(
    checkout: Path, algo: str, env: str, batch: int, t: int, calls: int, flags: str = ""
) -> float:
    code = CHILD.format(algo=algo, env=env, batch=batch, t=t, calls=calls)
    environ = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    if flags:
        environ["XLA_FLAGS"] = f"{environ.get('XLA_FLAGS', '')} {flags}".strip()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=checkout, capture_output=True, text=True, env=environ
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("MS ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{checkout}: {algo} failed:\n{out.stderr[-2000:]}")
    return float(lines[-1].split()[1])


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    side = parser.add_mutually_exclusive_group(required=True)
    side.add_argument("--old", type=Path, help="checkout of the commit to compare with")
    side.add_argument("--flags", help="XLA flags the new side adds (both sides run this checkout)")
    parser.add_argument("--algos", nargs="+", default=["qmix", "vdfd", "mmsa"])
    parser.add_argument("--env", default="smax_3m")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--T", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "update_ab.json")
    args = parser.parse_args()
    out = ab.header("update_ab.py", args.old, ROOT)
    out |= {"xla_flags": args.flags} if args.flags else {}
    out |= {"load_average_start": os.getloadavg()[0], "rows": []}
    print(f"{'algo':<8} {'old ms':>8} {'new ms':>8} {'new/old':>8}   (medians over rounds)")
    for algo in args.algos:
        figures = {"old": [], "new": []}
        for _ in range(args.rounds):
            for side, checkout, flags in (("old", args.old or ROOT, ""), ("new", ROOT, args.flags or "")):
                ms = one_process(checkout, algo, args.env, args.batch, args.T, args.calls, flags)
                figures[side].append(ms)
        old, new = statistics.median(figures["old"]), statistics.median(figures["new"])
        out["rows"].append(
            {"algo": algo, "env": args.env, "batch": args.batch, "T": args.T,
             "old_ms": figures["old"], "new_ms": figures["new"], "ratio_of_medians": new / old}
        )  # fmt: skip
        print(f"{algo:<8} {old:>8.1f} {new:>8.1f} {new / old:>8.2f}", flush=True)
    out["load_average_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
