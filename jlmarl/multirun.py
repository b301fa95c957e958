"""Sweeps in Hydra's multirun syntax: `python -m jlmarl.train -m algo=qmix,pqn_vdn env=smax_3m,smax_2s3z`.

Every `key=a,b` (or Hydra's `range(...)`, `choice(...)`, `glob(...)`) is an axis; each
combination is one ordinary run -- all its `num_seeds` seeds in one vmapped program --
and the combinations run one after the other in this process. Hydra's own launcher
is not used: `@hydra.main` would change the working folder and the error format.

The sweep folder is `run_dir=` (default `runs/sweep_<date-time>`); a combination runs in
`<sweep folder>/<its swept settings>` (e.g. `algo-qmix__env-smax_3m`), so the same
command with the same run_dir continues the sweep: finished combinations are skipped
(sweep.json records them), an interrupted one resumes from its checkpoint. Every
combination's settings are checked before the first one starts. The sweep ends with the
`jlmarl.compare` report over its runs in `<sweep folder>/compare`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException

from jlmarl.analysis.runs import CompareError
from jlmarl.config import ConfigError

FLAGS = ("-m", "--multirun")
RECORD = "sweep.json"


def is_multirun(argv: list[str]) -> bool:
    return any(a in FLAGS for a in argv)


def combinations(overrides: list[str]) -> list[tuple[list[str], list[str]]]:
    """Hydra overrides -> [(every override of one run, its swept ones)], in Hydra's order
    (the last axis varies fastest)."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        raise ConfigError(f"cannot read the sweep's overrides: {str(e).splitlines()[0]}") from None
    axes, swept_keys = [], set()
    for o in parsed:
        key = o.get_key_element()
        if o.is_sweep_override():
            if key in swept_keys:
                raise ConfigError(f"-m: {key} is swept twice; give each swept key once (key=a,b,c)")
            swept_keys.add(key)
            axes.append([(f"{key}={v}", True) for v in o.sweep_string_iterator()])
        else:
            axes.append([(o.input_line, False)])
    return [([a for a, _ in combo], [a for a, swept in combo if swept]) for combo in itertools.product(*axes)]


def folder_name(swept: list[str]) -> str:
    """['algo=qmix', 'algo.lr=0.001'] -> 'algo-qmix__algo.lr-0.001' (a run_dir= value Hydra's
    grammar reads unquoted: no '=', ',' or brackets)."""
    if not swept:  # -m with nothing swept: one run, as Hydra's multirun does
        return "run"
    return "__".join(re.sub(r"[^A-Za-z0-9._-]", "_", s.replace("=", "-", 1)) for s in swept)


def sweep(
    argv: list[str],
    check: Callable[[list[str]], object],
    run_one: Callable[[list[str]], dict],
    compare: Callable[[list[Path], Path], dict],
    say=print,
) -> Path:
    """Runs every combination of `argv` (its -m flag included) not yet finished.

    check(overrides): raises ConfigError for a bad combination (nothing has run yet);
    run_one(overrides with run_dir=): trains one combination; compare(run_dirs, out)."""
    overrides = [a for a in argv if a not in FLAGS]
    given = [o for o in overrides if o.startswith("run_dir=")]
    if any(o.startswith("resume=") for o in overrides):
        raise ConfigError(
            "resume= is not a sweep setting: run the same -m command with the same run_dir= "
            "and finished combinations are skipped, interrupted ones resumed"
        )
    sweep_dir = Path(given[-1].partition("=")[2] if given else f"runs/sweep_{time.strftime('%Y%m%d-%H%M%S')}")
    if not str(sweep_dir).strip():
        raise ConfigError("run_dir is empty; give the sweep a folder (run_dir=runs/<name>) or leave it out")
    plan = combinations([o for o in overrides if not o.startswith("run_dir=")])
    runs = []
    for every, swept in plan:
        name = folder_name(swept)
        runs.append(([*every, f"run_dir={sweep_dir / name}"], name))
    intervals = {}
    for every, name in runs:
        try:
            cfg = check(every)
        except ConfigError as e:
            raise ConfigError(f"sweep combination {name}: {e}") from None
        if cfg is not None and "test_interval" in cfg:
            intervals[name] = int(cfg.test_interval)
    if len(set(intervals.values())) > 1:  # the report needs one evaluation grid: refuse now
        seen = ", ".join(f"{name} {value}" for name, value in intervals.items())
        raise ConfigError(
            f"the sweep's combinations evaluate at different test_interval ({seen}), so their "
            "compare report is impossible; give the whole sweep one, e.g. "
            f"test_interval={max(intervals.values())}"
        )
    record_path = sweep_dir / RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else {"runs": {}}
    record["command"] = "python -m jlmarl.train " + " ".join(argv)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    say(f"jlmarl: sweep of {len(runs)} run(s) in {sweep_dir}")
    for i, (every, name) in enumerate(runs, 1):
        if record["runs"].get(name, {}).get("finished"):
            say(f"jlmarl: [{i}/{len(runs)}] {name}: finished earlier, skipped")
            continue
        say(f"jlmarl: [{i}/{len(runs)}] {name}")
        summary = run_one(every)
        record["runs"][name] = {"overrides": every, "finished": True, "wall_s": summary.get("wall_s")}
        tmp = record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, record_path)  # never a half-written record
    out = sweep_dir / "compare"
    try:
        compare([sweep_dir / name for _, name in runs], out)
        say(f"jlmarl: sweep finished; compare report in {out}/report.md")
    except CompareError as e:  # the runs are all there: only the report is missing
        say(f"warning: no compare report for the sweep: {e}")
    return sweep_dir
