"""python -m jlmarl.compare RUN_DIR[@NAME] [RUN_DIR ...] [out=DIR] [reference=FILE|TASK:MIN:MAX,...]
                           [last=3] [reps=2000] [seed=0] [steps=N]

Compares finished runs the way marl-eval does (rliable's statistics): per-task normalised
final scores aggregated as IQM / median / mean / optimality gap with 95% stratified
bootstrap CIs, probability of improvement for each pair of algorithms, performance
profiles, IQM against env steps and per-task tables. Writes report.md, report.json,
aggregate.png, probability_of_improvement.png, performance_profile.png,
sample_efficiency.png and marl_eval.json (marl-eval's raw-data format) into out=DIR,
by default `compare/` in the run folders' common parent (`./compare` if they share none).

- algorithm = the run's algo.name, or NAME from RUN_DIR@NAME (to tell ablations apart);
  task = its env.name. Folders of one algorithm on one task are pooled as more seeds.
- Runs must share test_interval and evaluation points (env steps binned to the multiple
  of test_interval each evaluation was due at, the last one at or below it; one at or past
  total_steps to total_steps) and every algorithm needs runs on every task; otherwise the
  command stops with one sentence naming the mismatch (exit 2).
- Score: test_win_rate as is where the env logs it, else test_return_mean min-max
  normalised over every evaluation of every run on that task, or by reference= (a
  YAML/JSON file {task: [min, max]} or inline smax_3m:0:20,oracle:-1:1; a reference
  scores that task by return even where it logs a win rate).
- Final score of a seed: the mean of its last `last` evaluations (default 3, or all of them
  if the runs have fewer; less noisy than one; last=1 is marl-eval's final evaluation).
- steps=N compares every run at its first N env steps, as if N had been its budget: a
  longer run's first evaluation at or past N is its final one (runs shorter than N are
  refused). Equal env steps for runs trained to different budgets.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from jlmarl.analysis.runs import CompareError, parse_reference

OPTIONS = {"out", "reference", "last", "reps", "seed", "steps"}
USAGE = (
    "usage: python -m jlmarl.compare RUN_DIR[@NAME] [RUN_DIR ...] [out=DIR] [reference=...] "
    "[last=3] [reps=2000] [seed=0] [steps=N]"
)


def default_out(run_dirs: list[Path]) -> Path:
    common = Path(os.path.commonpath([str(d.resolve().parent) for d in run_dirs]))
    return Path("compare") if common == Path(common.anchor) else common / "compare"


def parse_args(argv: list[str]) -> tuple[list[tuple[Path, str | None]], dict]:
    runs, options = [], {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in OPTIONS:
            options[key] = value
            continue
        # A run folder may hold '=' or '@' itself (Hydra sweep folders): the whole argument wins if it exists.
        head, at, name = arg.rpartition("@")
        if Path(arg).exists() or not (at and Path(head).exists()):
            head, name = arg, ""
        if sep and not Path(head).exists():
            raise CompareError(f"unknown option {key}=; valid: {', '.join(sorted(OPTIONS))}")
        runs.append((Path(head), name or None))
    if not runs:
        raise CompareError(f"give at least one run folder; {USAGE}")
    for key, low in (("last", 1), ("reps", 1), ("seed", 0), ("steps", 1)):
        if key in options and not (options[key].isdigit() and int(options[key]) >= low):
            raise CompareError(f"{key} must be an integer >= {low}, got {options[key]!r}")
    return runs, options


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("--help", "-h", "help") for a in argv):
        print(__doc__.strip())
        return
    try:
        runs, options = parse_args(argv)
        from jlmarl.analysis.report import compare  # after parsing: rliable takes a second to import

        out = Path(options.get("out") or default_out([p for p, _ in runs]))
        report = compare(
            runs,
            out,
            reference=parse_reference(options["reference"]) if options.get("reference") else None,
            last=int(options["last"]) if "last" in options else None,
            reps=int(options.get("reps", 2000)),
            seed=int(options.get("seed", 0)),
            until=int(options["steps"]) if "steps" in options else None,
        )
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    width = max(len(a) for a in report["algorithms"])
    print(
        f"{'algorithm':<{width}}  IQM [95% CI] of normalised final scores over {len(report['tasks'])} task(s)"
    )
    for algo in report["algorithms"]:
        e = report["aggregate"][algo]["iqm"]
        print(f"{algo:<{width}}  {e['estimate']:.3f} [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]")
    for note in report["notes"]:
        print(f"note: {note}")
    print(f"wrote {out}/report.md, report.json, marl_eval.json and {len(report['files']) - 3} PNGs")


if __name__ == "__main__":
    main()
