"""Per-seed metrics as JSON lines: one object per log point, flushed as written."""

from __future__ import annotations

import json
import math
from pathlib import Path


def _plain(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)


class MetricsLog:
    def __init__(self, run_dir: Path, num_seeds: int):
        folder = Path(run_dir) / "metrics"
        folder.mkdir(parents=True, exist_ok=True)
        self.files = [open(folder / f"seed_{k}.jsonl", "a", encoding="utf-8") for k in range(num_seeds)]

    def write(self, seed_index: int, record: dict) -> None:
        line = {k: (v if isinstance(v, (int, str)) else _plain(v)) for k, v in record.items()}
        self.files[seed_index].write(json.dumps(line) + "\n")
        self.files[seed_index].flush()

    def close(self) -> None:
        for f in self.files:
            f.close()
