"""Per-seed metrics as JSON lines: one object per log point, flushed as written.

Each line is one write of a whole line, so a crash leaves at most one partial
trailing line; `sync()` (called before every checkpoint) makes the files durable
up to the byte lengths the checkpoint records. Resuming cuts the files back to
those lengths, so lines written after the checkpoint (or half-written by a killed
run) are rewritten by the resumed run, never duplicated. A file shorter than its
checkpoint recorded (cut, deleted) is never padded: `short_files` names it and the
run resumes from an older checkpoint that fits, or refuses.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path


def _plain(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)


def seed_file(run_dir: Path, seed_index: int) -> Path:
    return Path(run_dir) / "metrics" / f"seed_{seed_index}.jsonl"


def short_files(run_dir: Path, offsets: list[int]) -> str | None:
    """Why the metrics files cannot be cut back to `offsets` (None if they can)."""
    for k, size in enumerate(offsets):
        path = seed_file(run_dir, k)
        have = path.stat().st_size if path.is_file() else None
        if have is None and size > 0:
            return f"{path} is missing (the checkpoint recorded {size} bytes)"
        if have is not None and have < size:
            return f"{path} has {have} bytes, the checkpoint recorded {size}"
    return None


class MetricsLog:
    def __init__(self, run_dir: Path, num_seeds: int, truncate_to: list[int] | None = None):
        (Path(run_dir) / "metrics").mkdir(parents=True, exist_ok=True)
        paths = [seed_file(run_dir, k) for k in range(num_seeds)]
        if truncate_to is not None:
            problem = short_files(run_dir, truncate_to)
            if problem:  # truncate() would pad with NUL bytes
                raise OSError(f"cannot cut the metrics back to the checkpoint: {problem}")
            for path, size in zip(paths, truncate_to, strict=True):
                with open(path, "a+b") as f:
                    f.truncate(size)
        self.files = [open(p, "a", encoding="utf-8") for p in paths]

    def write(self, seed_index: int, record: dict) -> None:
        line = {k: (v if isinstance(v, (int, str)) else _plain(v)) for k, v in record.items()}
        self.files[seed_index].write(json.dumps(line) + "\n")
        self.files[seed_index].flush()

    def sync(self) -> None:
        """Durable on disk up to offsets() (before a checkpoint records them)."""
        for f in self.files:
            f.flush()
            os.fsync(f.fileno())

    def offsets(self) -> list[int]:
        return [f.tell() for f in self.files]

    def close(self) -> None:
        for f in self.files:
            f.close()


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def read_metrics(path: Path, warn=_warn) -> list[dict]:
    """The complete lines of one seed's file. A trailing half-written line (left by a
    killed run) is skipped silently; any other line that is not a JSON object with
    env_steps is skipped with a warning naming the file and line number."""
    records = []
    text = Path(path).read_bytes().decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if not line.endswith("\n"):
            break
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("env_steps"), int):
            warn(f"{path}:{number}: not a metrics line, skipped")
            continue
        records.append(record)
    return records


def read_run(run_dir: Path, warn=_warn) -> list[list[dict]]:
    """Every seed's records of a run, in seed order."""
    files = sorted((Path(run_dir) / "metrics").glob("seed_*.jsonl"), key=_seed_index)
    return [read_metrics(p, warn) for p in files]


def _seed_index(path: Path) -> int:
    suffix = path.stem.split("_", 1)[1]
    return int(suffix) if suffix.isdigit() else sys.maxsize
