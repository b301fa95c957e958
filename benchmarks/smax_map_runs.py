"""Does every SMAC map the papers use train through the CLI? A 2000-step QMIX run per map.

    python benchmarks/smax_map_runs.py [--maps corridor MMM ...] [--force] [--steps 2000]

For each map (default: every SMAC map named in the five seeds, plus SMACv2's race maps
at every size: 5v5, 10v10, 10v11, 20v20, 20v23) runs, one at a time, as a subprocess:

    python -m jlmarl.train algo=qmix env=smax_<map> total_steps=2000 num_envs=4 batch_size=8
        buffer_size=64 test_interval=1000 test_episodes=4 run_dir=<tmp>/<map> logger=none
        plot=false progress=false compile_cache=false

small settings so that each run is quick but does everything a real run does: collects,
trains (batch_size 8 < the ~30 episodes of 2000 steps, so updates run), evaluates twice and
checkpoints at the end. compile_cache=false: every run compiles from scratch, as a first
run does. Records the exit code, wall seconds and the last line of output per map in
--out (benchmarks/results/smax_map_runs.json), with the command, the machine and the load
average when the run started; resumable: maps already in --out are skipped unless --force.
Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Every SMAC map named in the five seeds' papers, then SMACv2's race maps.
SMAC_MAPS = (
    "corridor",
    "MMM",
    "MMM2",
    "1c3s5z",
    "2c_vs_64zg",
    "3s_vs_5z",
    "6h_vs_8z",
    "5m_vs_6m",
    "3s5z_vs_3s6z",
    "8m",
    "3m",
    "3s5z",
    "25m",
    "27m_vs_30m",
    "bane_vs_bane",
    "so_many_baneling",
    "2m_vs_1z",
    "3s_vs_4z",
)
RACE_MAPS = tuple(
    f"{race}_{size}"
    for size in ("5v5", "10v10", "10v11", "20v20", "20v23")
    for race in ("protoss", "terran", "zerg")
)
SETTINGS = (
    "num_envs=4",
    "batch_size=8",
    "buffer_size=64",
    "test_interval=1000",
    "test_episodes=4",
    "logger=none",
    "plot=false",
    "progress=false",
    "compile_cache=false",
)


def command(name: str, steps: int, run_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jlmarl.train",
        "algo=qmix",
        f"env=smax_{name}",
        f"total_steps={steps}",
        *SETTINGS,
        f"run_dir={run_dir / name}",
    ]


def git_commit() -> str:
    """HEAD's short hash, + "-dirty" when tracked files differ from it (others' work in the tree)."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], capture_output=True).returncode != 0
    return head + ("-dirty" if dirty else "")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][-300:] if lines else ""


def table(rows: dict) -> str:
    out = [f"{'map':<20} {'exit':>4} {'wall s':>7}  last line"]
    for name, row in rows.items():
        out.append(f"{name:<20} {row['exit_code']:>4} {row['wall_s']:>7.1f}  {row['last_line'][:70]}")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--maps", nargs="+", help="map names without smax_ (default: SMAC's and every race map)"
    )
    parser.add_argument("--steps", type=int, default=2000, help="total_steps of each run")
    parser.add_argument("--force", action="store_true", help="rerun maps already in --out")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a run counts as failed")
    parser.add_argument("--run-dir", help="parent of the runs' folders (default: a new folder under /tmp)")
    parser.add_argument("--out", default="benchmarks/results/smax_map_runs.json")
    args = parser.parse_args(argv)

    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    rows = result.setdefault("maps", {})
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="smax_map_runs_"))
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    for name in args.maps or SMAC_MAPS + RACE_MAPS:
        if name in rows and not args.force:
            print(f"{name}: already in {out}, skipped (--force reruns it)", flush=True)
            continue
        cmd = command(name, args.steps, run_dir)
        load = os.getloadavg()
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
            code, text = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            code = "timeout"
            parts = [p.decode(errors="replace") if isinstance(p, bytes) else p for p in (e.stdout, e.stderr)]
            text = "".join(p for p in parts if p)
        wall = time.perf_counter() - t0
        rows[name] = {
            "exit_code": code,
            "wall_s": round(wall, 1),
            "last_line": last_line(text),
            "command": " ".join(["python", *cmd[1:]]),
            "started": started,
            "commit": git_commit(),
            "load_average_at_start": [round(x, 2) for x in load],
        }
        result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
        result["settings"] = list(SETTINGS)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")  # after every map: resumable
        print(
            f"{name}: exit {code}, {wall:.1f} s, load {load[0]:.2f}: {rows[name]['last_line'][:100]}",
            flush=True,
        )
    print(table(rows))
    return 0 if all(r["exit_code"] == 0 for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
