"""What the before/after benchmarks (env_ab, whole_run, compile_time) share: the commit of
a checkout, the environment both sides run in, and the JSON header every result file carries."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from jlmarl import allocator


def commit(checkout: Path) -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True
    )
    return out.stdout.strip()


def child_env(drop: tuple[str, ...] = ("JAX_COMPILATION_CACHE_DIR", "JLMARL_FAULT")) -> dict[str, str]:
    """The environment of a `python -m jlmarl.train` child on either side: CPU, without the
    variables in `drop`, and already under the malloc JLMARL_ALLOCATOR picks (tcmalloc where
    installed), so that a checkout from before jlmarl.allocator runs on the same one."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["JAX_PLATFORMS"] = "cpu"
    return allocator.preload_env(env) or env


def header(script: str, old: Path | None, new: Path) -> dict:
    """command, machine and the two commits of a result file."""
    out = {
        "command": f"python benchmarks/{script} " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "new_commit": commit(new),
        "child_malloc": allocator.active(child_env()),
    }
    if old is not None:
        out["old_commit"] = commit(old)
    return out


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    print(f"wrote {path}")
