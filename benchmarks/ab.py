"""What the before/after benchmarks (env_ab, whole_run, compile_time) share: the commit of
a checkout, and the JSON header every result file carries."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path


def commit(checkout: Path) -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True
    )
    return out.stdout.strip()


def header(script: str, old: Path | None, new: Path) -> dict:
    """command, machine and the two commits of a result file."""
    out = {
        "command": f"python benchmarks/{script} " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "new_commit": commit(new),
    }
    if old is not None:
        out["old_commit"] = commit(old)
    return out


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    print(f"wrote {path}")
