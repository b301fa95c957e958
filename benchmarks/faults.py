"""Fault injection with real processes: every fault class at every phase of a run.

    python benchmarks/faults.py [--json benchmarks/results/faults.json] [--only SUBSTRING]

Each case starts `python -m jlmarl.train` on a tiny run (VDN on matrix_three_state),
injects one fault, and checks the documented exit code, the message (and that no
traceback or segfault reaches the user), then resumes (or restarts, as the message
says) and checks that the run writes exactly the metric lines of a run that never
stopped (timing fields aside). Faults:

- SIGINT, SIGTERM, SIGKILL at each phase, sent by the process to itself at the named
  point (JLMARL_FAULT=<point>:<signal>, see jlmarl.train.FAULT_HOOKS): before the run
  folder exists, compiling, after the compile, training, during a save, before the
  final evaluation, before the end-of-run plot;
- real signals from outside by timing: SIGINT during XLA's compile (once, and twice),
  SIGTERM while training; a second process on the same run_dir;
- disk full during a save (an injected ENOSPC: this machine cannot mount a small tmpfs);
- each kept checkpoint in turn corrupted (bytes overwritten), truncated, deleted;
- a metrics file damaged (a bad line), cut short, deleted;
- run folders that are not ours, hold another run, or are empty strings.

Prints a table (case, fault, expected exit, got, message ok, resume = uninterrupted)
and writes the counts and every row as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jlmarl.core.metrics_log import read_run  # noqa: E402

TINY = [
    "algo=vdn", "env=matrix_three_state", "num_seeds=2", "num_envs=8", "batch_size=16",
    "buffer_size=64", "total_steps=400", "test_interval=120", "test_episodes=4",
    "checkpoint_interval=80", "checkpoint_keep=3", "time_buckets=1", "progress=false",
    "log_interval_s=0", "plot=false",
]  # fmt: skip
# 30 chunks: long enough for a signal from outside to land while training.
LONG = [a if not a.startswith("total_steps=") else "total_steps=2400" for a in TINY]
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
SIGNAL_PHASES = [
    "before_run_dir", "before_compile", "after_compile", "after_chunk:2", "during_save:3",
    "before_eval", "before_plot",
]  # fmt: skip


@dataclass
class Row:
    case: str
    fault: str
    expected: int
    got: int | None
    message_ok: bool
    resume_equal: bool | None  # None: nothing to resume (the fault is a refusal)
    detail: str = ""
    faults: int = 1  # faults injected by this case

    @property
    def passed(self) -> bool:
        return self.got == self.expected and self.message_ok and self.resume_equal is not False


class Bench:
    def __init__(self, work: Path, cache: Path):
        self.work, self.cache = work, cache
        self.references: dict[str, list] = {}
        self.rows: list[Row] = []
        self.faults = 0

    def env(self, fault: str | None = None, cache: bool = True) -> dict:
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": FAST_COMPILE, "PYTHONFAULTHANDLER": "1"}
        env.pop("JLMARL_FAULT", None)
        if cache:
            env |= {
                "JAX_COMPILATION_CACHE_DIR": str(self.cache),
                "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            }
        if fault:
            env["JLMARL_FAULT"] = fault
        return env

    def command(self, args, run_dir) -> list[str]:
        return [sys.executable, "-m", "jlmarl.train", *args, f"run_dir={run_dir}"]

    def train(self, args, run_dir, fault=None, extra=()) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command([*args, *extra], run_dir), cwd=ROOT, env=self.env(fault), capture_output=True,
            text=True, timeout=600,
        )  # fmt: skip

    def popen(self, args, run_dir, cache=True, wrapper=()) -> subprocess.Popen:
        # cache=False: a real compile to interrupt (the CLI's own cache is on by default)
        args = args if cache else [*args, "compile_cache=false"]
        return subprocess.Popen(
            [*wrapper, *self.command(args, run_dir)], cwd=ROOT, env=self.env(cache=cache),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def reference(self, args) -> list:
        key = " ".join(args)
        if key not in self.references:
            run_dir = self.work / f"reference_{len(self.references)}"
            result = self.train(args, run_dir)
            assert result.returncode == 0, result.stderr[-3000:]
            self.references[key] = metrics(run_dir)
        return self.references[key]

    def record(self, case, fault, expected, result_code, output, needles, resume_equal, faults=1):
        clean = (
            "Traceback" not in output and "Segmentation fault" not in output and "Fatal Python" not in output
        )
        missing = [n for n in needles if n not in output]
        detail = "; ".join([*(f"missing {n!r}" for n in missing), *([] if clean else ["traceback"])])
        if result_code != expected:
            detail = f"{detail}; output: {output.strip()[-400:]}".strip("; ")
        self.rows.append(
            Row(case, fault, expected, result_code, clean and not missing, resume_equal, detail, faults)
        )
        self.faults += faults
        row = self.rows[-1]
        print(f"{'ok  ' if row.passed else 'FAIL'} {case:<34} {fault:<28} {detail}", flush=True)

    def finish(self, args, run_dir, how: str, expect: list | None = None, needles=()) -> bool:
        """Continues the run (how = resume | plain) and compares its metrics."""
        extra = ["resume=true"] if how == "resume" else []
        result = self.train(args, run_dir, extra=extra)
        output = result.stdout + result.stderr
        if result.returncode != 0 or "Traceback" in output or any(n not in output for n in needles):
            print(f"     continuing failed ({result.returncode}): {output.strip()[-600:]}", flush=True)
            return False
        return metrics(run_dir) == (expect if expect is not None else self.reference(args))


def metrics(run_dir: Path) -> list:
    timing = {"wall_s", "env_steps_per_s"}
    return [
        [{k: v for k, v in r.items() if k not in timing} for r in s]
        for s in read_run(run_dir, lambda _: None)
    ]


def steps(run_dir: Path) -> list[int]:
    folder = run_dir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def wait_for(predicate, process: subprocess.Popen, timeout=300.0) -> bool:
    deadline = time.time() + timeout
    while not predicate():
        if process.poll() is not None or time.time() > deadline:
            return False
        time.sleep(0.01)
    return True


def signal_cases(b: Bench) -> None:
    """Each signal at each phase, sent by the process to itself at the named point."""
    for sig, code in (("sigint", 130), ("sigterm", 143), ("sigkill", -9)):
        for phase in SIGNAL_PHASES:
            if sig == "sigkill" and phase == "before_run_dir":
                continue  # nothing exists yet: the same as being killed before starting
            point, _, nth = phase.partition(":")
            run_dir = b.work / f"{sig}_{point}"
            args = [*TINY, "plot=true"] if point == "before_plot" else TINY
            result = b.train(args, run_dir, fault=f"{point}:{sig}:{nth or 1}")
            output = result.stdout + result.stderr
            name = sig.upper()
            if sig == "sigkill":
                needles = []
            elif point == "before_run_dir":
                needles = [f"{name}: stopped before the run folder was written"]
            elif point in ("before_compile", "after_compile"):
                needles = [f"{name}: stopped before the first checkpoint", "the same command"]
            else:
                needles = [
                    f"{name}: checkpoint saved",
                    f"python -m jlmarl.train resume=true run_dir={run_dir}",
                ]
            if point == "before_run_dir" and run_dir.exists():
                needles.append("<run_dir must not exist>")
            if sig == "sigkill" and point != "after_compile":
                how, more = "resume", ["took over the stale lock"]
            elif point in ("before_run_dir", "before_compile", "after_compile"):
                how, more = "plain", (["took over the stale lock"] if sig == "sigkill" else [])
            else:
                how, more = "resume", []
            equal = b.finish(args, run_dir, how, needles=more)
            b.record(f"{sig} at {phase}", f"{sig} @ {point}", code, result.returncode, output, needles, equal)


def external_signal_cases(b: Bench) -> None:
    """Real signals from another process, by timing: the compile is the slow phase, so it
    runs without the compilation cache here."""
    cases = [
        ("sigint during compile", [signal.SIGINT], 130, "compile", ()),
        ("sigint twice during compile", [signal.SIGINT, signal.SIGINT], 130, "compile", ()),
        ("sigterm while training", [signal.SIGTERM], 143, "training", ()),
        # timeout passes the signal to the run and to its process group: one request, twice
        ("sigint to `timeout` while training", [signal.SIGINT], 130, "training", ("timeout", "900")),
    ]
    for case, sigs, code, phase, wrapper in cases:
        run_dir = b.work / case.replace(" ", "_").replace("`", "")
        process = b.popen(LONG, run_dir, cache=phase != "compile", wrapper=wrapper)
        if phase == "compile":
            ready = wait_for(lambda d=run_dir: (d / "config.yaml").exists(), process)
            time.sleep(1.0)  # engine.init done; XLA is compiling the chunk (several seconds uncached)
        else:
            ready = wait_for(lambda d=run_dir: len(steps(d)) >= 3, process)
        for sig in sigs:
            process.send_signal(sig)
            time.sleep(1.5)  # later than jlmarl.train._SAME_SIGNAL_S: a second request
        out, err = process.communicate(timeout=600)
        name = signal.Signals(sigs[0]).name
        if len(sigs) > 1:
            needles = [f"{name} again: exiting now"]
        elif phase == "compile":
            needles = [f"{name}: stopped before the first checkpoint"]
        else:
            needles = [f"{name}: checkpoint saved"]
        how = "plain" if phase == "compile" else "resume"
        equal = b.finish(LONG, run_dir, how, b.reference(LONG)) if ready else False
        b.record(case, f"{'+'.join(s.name for s in sigs)} from outside", code, process.returncode,
                 out + err, needles, equal, faults=len(sigs))  # fmt: skip


def second_signal_cases(b: Bench) -> None:
    """A second stop request (over a second after the first) exits at once, even in the
    middle of a save: the newest complete checkpoint is intact and resuming is exact."""
    for point, nth, sig, code, newest in (
        ("during_save", 3, "sigint", 130, 2),
        ("after_chunk", 2, "sigterm", 143, 2),
    ):
        run_dir = b.work / f"second_{sig}_{point}"
        result = b.train(TINY, run_dir, fault=f"{point}:{sig}*2:{nth}")
        output = result.stdout + result.stderr
        needles = [f"{sig.upper()} again: exiting now"] + (
            [] if steps(run_dir) == list(range(1, newest + 1)) else ["<steps>"]
        )
        equal = b.finish(TINY, run_dir, "resume")
        case = f"second {sig} at {point}:{nth}"
        b.record(case, f"{sig} x2 @ {point}", code, result.returncode, output, needles, equal, faults=2)


def second_process_case(b: Bench) -> None:
    run_dir = b.work / "two_processes"
    first = b.popen(LONG, run_dir, cache=False)
    ready = wait_for(lambda: (run_dir / ".lock").exists(), first)
    second = b.train(LONG, run_dir) if ready else None
    out, err = first.communicate(timeout=600)
    equal = first.returncode == 0 and metrics(run_dir) == b.reference(LONG)
    needles = [f"run_dir={run_dir} is in use by process {first.pid}"]
    b.record("second process on the run_dir", "second process", 2, second and second.returncode,
             (second.stdout + second.stderr) if second else "", needles, equal)  # fmt: skip


def disk_full_case(b: Bench) -> None:
    run_dir = b.work / "disk_full"
    result = b.train(TINY, run_dir, fault="during_save:enospc:3")
    output = result.stdout + result.stderr
    needles = [f"cannot save checkpoint 3 in {run_dir / 'checkpoints'}: No space left on device",
               "a checkpoint needs about", "checkpoint 2 and older are intact", "resume=true"]  # fmt: skip
    intact = steps(run_dir) == [1, 2] and len(result.stderr.strip().splitlines()) == 1
    equal = b.finish(TINY, run_dir, "resume") if intact else False
    b.record("disk full during a save", "ENOSPC @ during_save", 5, result.returncode, output, needles, equal)


def killed_copy(b: Bench, base: Path, name: str) -> Path:
    run_dir = b.work / name
    shutil.copytree(base, run_dir)
    return run_dir


def damage_cases(b: Bench) -> None:
    """A run killed after chunk 4 (checkpoints 2, 3, 4 kept), then each checkpoint in turn
    corrupted, truncated or deleted, and each metrics file damage, before resuming."""
    base = b.work / "killed_base"
    b.train(TINY, base, fault="after_chunk:sigkill:4")
    assert steps(base) == [2, 3, 4], steps(base)
    for step in (2, 3, 4):
        for damage in ("corrupt", "truncate", "delete"):
            run_dir = killed_copy(b, base, f"{damage}_{step}")
            folder = run_dir / "checkpoints" / str(step)
            files = sorted(p for p in folder.rglob("*") if p.is_file())
            if damage == "delete":
                shutil.rmtree(folder)
            for path in files if damage != "delete" else []:
                data = path.read_bytes()
                path.write_bytes(data[: len(data) // 3] if damage == "truncate" else bytes(len(data)) + b"x")
            result = b.train(TINY, run_dir, extra=["resume=true"])
            output = result.stdout + result.stderr
            newest = step == 4
            if newest and damage != "delete":
                needles = [
                    f"cannot resume from {folder}",
                    f"moved it to {run_dir / 'checkpoints' / 'corrupt' / '4'}",
                ]
            else:
                needles = ["resuming"]
            equal = result.returncode == 0 and metrics(run_dir) == b.reference(TINY)
            b.record(f"{damage} checkpoint {step} of 2-4", f"{damage} ckpt {step}", 0, result.returncode,
                     output, needles, equal)  # fmt: skip

    path_in = lambda d: d / "metrics" / "seed_0.jsonl"  # noqa: E731
    # a damaged line inside the part the checkpoint counts: kept, skipped by readers by name
    run_dir = killed_copy(b, base, "metrics_damaged")
    lines = path_in(run_dir).read_bytes().splitlines(keepends=True)
    lines[1] = b"#" * (len(lines[1]) - 1) + b"\n"
    path_in(run_dir).write_bytes(b"".join(lines))
    result = b.train([*TINY, "plot=true"], run_dir, extra=["resume=true"])
    output = result.stdout + result.stderr
    expect = b.reference(TINY)
    expect = [[r for i, r in enumerate(s) if not (k == 0 and i == 1)] for k, s in enumerate(expect)]
    equal = result.returncode == 0 and metrics(run_dir) == expect and (run_dir / "curves.png").exists()
    b.record("metrics line damaged", "bad line, end plot", 0, result.returncode, output,
             [f"{path_in(run_dir)}:2: not a metrics line, skipped"], equal)  # fmt: skip

    run_dir = killed_copy(b, base, "metrics_short")
    data = path_in(run_dir).read_bytes()
    path_in(run_dir).write_bytes(data[: len(data) - 20])
    result = b.train(TINY, run_dir, extra=["resume=true"])
    output = result.stdout + result.stderr
    equal = (
        result.returncode == 0
        and metrics(run_dir) == b.reference(TINY)
        and b"\0" not in path_in(run_dir).read_bytes()
    )
    b.record("metrics file cut short", "short metrics", 0, result.returncode, output,
             [f"{path_in(run_dir)} has", "resuming from the newest good checkpoint"], equal)  # fmt: skip

    run_dir = killed_copy(b, base, "metrics_missing")
    path_in(run_dir).unlink()
    result = b.train(TINY, run_dir, extra=["resume=true"])
    b.record("metrics file deleted", "missing metrics", 2, result.returncode, result.stdout + result.stderr,
             [f"{path_in(run_dir)} is missing", "fits the run's files"], None)  # fmt: skip


def folder_cases(b: Bench) -> None:
    """Folders the run must refuse without writing into them (not even its lock)."""
    foreign = b.work / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    result = b.train(TINY, foreign)
    needles = ["is not empty and is not a jlmarl run"]
    if [p.name for p in foreign.iterdir()] != ["notes.txt"]:
        needles.append("<folder left untouched>")
    b.record("folder that is not a run", "foreign folder", 2, result.returncode, result.stderr, needles, None)

    other = b.work / "other_run"
    other.mkdir()
    shutil.copy(b.work / "reference_0" / "config.yaml", other / "config.yaml")
    result = b.train([*TINY, "algo.lr=0.5"], other)
    needles = ["holds another run", "algo.lr=0.001 (now 0.5)"]
    if [p.name for p in other.iterdir()] != ["config.yaml"]:
        needles.append("<folder left untouched>")
    b.record("folder of another run", "another run", 2, result.returncode, result.stderr, needles, None)

    command = [sys.executable, "-m", "jlmarl.train", *TINY, "run_dir="]
    result = subprocess.run(command, cwd=b.work, env=b.env(), capture_output=True, text=True, timeout=600)
    needles = ["run_dir is empty"] + (["<cwd left untouched>"] if (b.work / "config.yaml").exists() else [])
    b.record("empty run_dir", "run_dir=", 2, result.returncode, result.stderr, needles, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "faults.json"))
    parser.add_argument(
        "--only", default="", help="run only the groups whose name contains this (merged into --json by case)"
    )
    options = parser.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="jlmarl-faults-") as tmp:
        b = Bench(Path(tmp) / "runs", Path(tmp) / "cache")
        b.work.mkdir()
        b.reference(TINY)
        groups = [
            signal_cases, second_signal_cases, external_signal_cases, second_process_case, disk_full_case,
            damage_cases, folder_cases,
        ]  # fmt: skip
        for group in groups:
            if options.only in group.__name__:
                group(b)
    rows = b.rows
    print(f"\n{'case':<34} {'fault':<28} {'exit':>5} {'got':>5} {'message':>8} {'resume=run':>10}")
    for r in rows:
        resume = "-" if r.resume_equal is None else ("yes" if r.resume_equal else "NO")
        print(f"{r.case:<34} {r.fault:<28} {r.expected:>5} {r.got!s:>5} {'ok' if r.message_ok else 'NO':>8} "
              f"{resume:>10}")  # fmt: skip
    passed = sum(r.passed for r in rows)
    print(f"\n{passed}/{len(rows)} cases pass, {b.faults} faults injected, {time.time() - t0:.0f}s")
    run = {
        "command": " ".join(["python benchmarks/faults.py", *sys.argv[1:]]),
        "date": time.ctime(),
        "cases": len(rows),
        "passed": passed,
        "faults_injected": b.faults,
        "wall_s": round(time.time() - t0, 1),
    }
    out = [asdict(r) | {"passed": r.passed} for r in rows]
    path = Path(options.json)
    if options.only and path.is_file():  # a partial rerun replaces its cases in the full report
        old = json.loads(path.read_text())
        for r in old["rows"]:  # rows written before these fields existed
            r.setdefault("faults", 2 if "+" in r["fault"] else 1)
            r.setdefault(
                "passed", r["got"] == r["expected"] and r["message_ok"] and r["resume_equal"] is not False
            )
        new_cases = {r["case"] for r in out}
        out = [r for r in old["rows"] if r["case"] not in new_cases] + out
        earlier = old.get("runs") or [
            {k: old[k] for k in ("command", "cases", "passed", "faults_injected", "wall_s")}
        ]
        runs = [*earlier, run]
    else:
        runs = [run]
    report = {
        "cases": len(out),
        "passed": sum(r["passed"] for r in out),
        "faults_injected": sum(r.get("faults", 1) for r in out),
        "runs": runs,
        "rows": out,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    sys.exit(0 if passed == len(rows) else 1)


if __name__ == "__main__":
    main()
