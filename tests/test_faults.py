"""Fault injection, fast and deterministic: faults are injected in-process through
jlmarl.train.FAULT_HOOKS at named points (real signals sent to this process, an
OSError for a full disk) and files are damaged between runs. Each case checks the
exit code, the one-line message, that no traceback reaches the user, and that
resuming afterwards writes exactly the metrics of the uninterrupted run.
benchmarks/faults.py runs the slow cases (real signals from outside, SIGKILL, a
second process) in subprocesses."""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import threading

import pytest

from jlmarl import train
from jlmarl.config import ConfigError, load_config
from jlmarl.core.metrics_log import read_metrics, read_run
from jlmarl.core.run_lock import _start_time

# 5 chunks of 80 env steps, a checkpoint after each (3 kept), evaluations at 80, 240,
# 320 and a final one at 400 (so the 'before_eval' point is reached).
TINY = [
    "algo=vdn", "env=matrix_three_state", "num_seeds=1", "num_envs=8", "batch_size=16",
    "buffer_size=64", "total_steps=400", "test_interval=120", "test_episodes=4",
    "checkpoint_interval=80", "checkpoint_keep=3", "time_buckets=1", "progress=false",
    "log_interval_s=0", "plot=false",
]  # fmt: skip


def main(capsys, *args) -> tuple[int, str, str]:
    """python -m jlmarl.train <args>, in this process: (exit code, stdout, stderr)."""
    try:
        train.main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def at(n: int, action):
    """A hook doing `action` the n-th time its point is reached."""
    calls = []

    def hook():
        calls.append(1)
        if len(calls) == n:
            action()

    return hook


def send(sig, times=1):
    def hook():
        for _ in range(times):
            os.kill(os.getpid(), sig)

    return hook


def metrics(run_dir):
    timing = {"wall_s", "env_steps_per_s"}
    return [[{k: v for k, v in r.items() if k not in timing} for r in seed] for seed in read_run(run_dir)]


def steps(run_dir):
    folder = run_dir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny run, never interrupted."""
    run_dir = tmp_path_factory.mktemp("faults") / "reference"
    try:
        train.main([*TINY, f"run_dir={run_dir}"])
    except SystemExit as e:
        pytest.fail(f"reference run exited {e.code}")
    expected = metrics(run_dir)
    assert [r["env_steps"] for r in expected[0]] == [80, 240, 320, 400]
    assert steps(run_dir) == [4, 5, 6] and not (run_dir / ".lock").exists()  # 6: after the final eval
    return run_dir, expected


def test_signals_at_every_phase_stop_cleanly_and_resume_exactly(reference, tmp_path, capsys, monkeypatch):
    """SIGINT/SIGTERM while training (right after a scheduled save: no second save of that
    chunk; delivered twice at once, as `timeout` does: one request), during a save, before
    the final evaluation and before the end-of-run plot; each resume is the original
    command plus resume=true."""
    run_dir = tmp_path / "r"
    command = [*TINY, f"run_dir={run_dir}"]
    resume = [*command, "resume=true"]
    cases = [
        # args, point, at its n-th time, signal, sent how many times at once, exit, newest step
        (command, "after_chunk", 2, signal.SIGINT, 2, 130, 2),
        (resume, "during_save", 1, signal.SIGTERM, 1, 143, 3),
        (resume, "before_eval", 1, signal.SIGINT, 1, 130, 6),
        ([*resume, "plot=true"], "before_plot", 1, signal.SIGTERM, 1, 143, 6),
    ]
    for args, point, n, sig, times, code, newest in cases:
        monkeypatch.setattr(train, "FAULT_HOOKS", {point: at(n, send(sig, times))})
        got, _, err = main(capsys, *args)
        assert got == code, (point, err)
        name = signal.Signals(sig).name
        assert f"{name}: checkpoint saved at env_steps" in err, (point, err)
        assert f"continue with: python -m jlmarl.train resume=true run_dir={run_dir}" in err
        assert steps(run_dir)[-1] == newest, point
        assert not (run_dir / ".lock").exists()
    assert (run_dir / "curves.png").stat().st_size > 1000  # the plot finished before the stop
    monkeypatch.setattr(train, "FAULT_HOOKS", {})
    got, out, err = main(capsys, *resume)
    assert got == 0, err
    assert metrics(run_dir) == reference[1]


def test_signal_before_the_folder_or_the_first_checkpoint_then_the_plain_command_restarts(
    reference, tmp_path, capsys, monkeypatch
):
    run_dir = tmp_path / "r"
    command = [*TINY, f"run_dir={run_dir}"]
    monkeypatch.setattr(train, "FAULT_HOOKS", {"before_run_dir": send(signal.SIGINT)})
    got, _, err = main(capsys, *command)
    assert got == 130 and "SIGINT: stopped before the run folder was written" in err
    assert not run_dir.exists()

    # compiling: the handler only sets a flag, the driver stops once the compile returns
    monkeypatch.setattr(train, "FAULT_HOOKS", {"before_compile": send(signal.SIGTERM)})
    got, _, err = main(capsys, *command)
    assert got == 143, err
    assert f"SIGTERM: stopped before the first checkpoint; run_dir={run_dir} is kept" in err
    assert steps(run_dir) == []

    # a lock left by a dead process (as after kill -9) is taken over, with a line
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = {"pid": dead.pid, "host": socket.gethostname(), "started": None, "since": "then"}
    (run_dir / ".lock").write_text(json.dumps(lock))
    monkeypatch.setattr(train, "FAULT_HOOKS", {})
    got, out, err = main(capsys, *command)
    assert got == 0, err
    assert f"took over the stale lock of process {dead.pid}" in out
    assert "starting it again from the beginning" in out
    assert metrics(run_dir) == reference[1]


def test_second_signal_exits_at_once_with_the_same_code(reference, tmp_path, capsys, monkeypatch):
    exits = []

    def hard_exit(code):  # os._exit in real runs (benchmarks/faults.py sends real signals)
        exits.append((threading.current_thread().name, code))
        if threading.current_thread() is threading.main_thread():
            raise SystemExit(code)

    monkeypatch.setattr(train, "_hard_exit", hard_exit)
    monkeypatch.setattr(train, "_SAME_SIGNAL_S", 0.0)  # these two are separate requests
    # The second signal waits until the first is recorded: two SIGTERMs pending at once are
    # one (POSIX does not queue them), which a loaded machine can make happen.
    recorded, is_second = threading.Event(), train._Signals._is_second

    def recording(self):
        second = is_second(self)
        recorded.set()
        return second

    monkeypatch.setattr(train._Signals, "_is_second", recording)

    def twice():
        os.kill(os.getpid(), signal.SIGTERM)
        assert recorded.wait(timeout=30)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(train, "FAULT_HOOKS", {"after_chunk": at(2, twice)})
    got, _, err = main(capsys, *TINY, f"run_dir={tmp_path / 'r'}")
    assert got == 143 and "SIGTERM again: exiting now" in err
    # the watcher thread exits on the second signal even while XLA holds the main thread
    # (compiling); the main thread's handler does too when it sees both signals
    for thread in threading.enumerate():
        if thread.name == "jlmarl-signals":
            thread.join(timeout=10)
    assert ("jlmarl-signals", 143) in exits and {code for _, code in exits} == {143}
    assert steps(tmp_path / "r") == [1, 2]  # the newest checkpoint is complete
    assert not (tmp_path / "r" / ".lock").exists()
    monkeypatch.setattr(train, "FAULT_HOOKS", {})
    got, _, err = main(capsys, *TINY, f"run_dir={tmp_path / 'r'}", "resume=true")
    assert got == 0, err
    assert metrics(tmp_path / "r") == reference[1]


def test_disk_full_during_a_save_then_a_corrupt_newest_checkpoint(reference, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "r"
    command = [*TINY, f"run_dir={run_dir}"]

    def disk_full():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(train, "FAULT_HOOKS", {"during_save": at(3, disk_full)})
    got, _, err = main(capsys, *command)
    assert got == train.EXIT_SAVE
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"cannot save checkpoint 3 in {run_dir / 'checkpoints'}: No space left on device" in lines[0]
    assert "a checkpoint needs about" in lines[0] and "checkpoint 2 and older are intact" in lines[0]
    assert f"continue with: python -m jlmarl.train resume=true run_dir={run_dir}" in lines[0]
    assert steps(run_dir) == [1, 2]
    assert [p.name for p in (run_dir / "checkpoints").iterdir() if not p.name.isdigit()] == []

    # then the newest checkpoint is damaged: it is moved aside and the run resumes from 1
    for data in (run_dir / "checkpoints" / "2").rglob("*"):
        if data.is_file():
            data.write_bytes(data.read_bytes()[:5])
    monkeypatch.setattr(train, "FAULT_HOOKS", {})
    got, out, err = main(capsys, *command, "resume=true")
    assert got == 0, err
    corrupt = run_dir / "checkpoints" / "corrupt" / "2"
    assert f"warning: cannot resume from {run_dir / 'checkpoints' / '2'}" in out
    assert f"moved it to {corrupt}" in out and corrupt.is_dir()
    assert metrics(run_dir) == reference[1]  # saved chunk 2 again: no StepAlreadyExistsError


def test_metrics_file_cut_short_or_missing_is_never_padded(reference, tmp_path, capsys):
    run_dir = tmp_path / "r"
    shutil.copytree(reference[0], run_dir)
    path = run_dir / "metrics" / "seed_0.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    # cut inside the last line: checkpoint 6 recorded more, checkpoint 5 fits
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:10])
    got, out, err = main(capsys, *TINY, f"run_dir={run_dir}", "resume=true")
    assert got == 0, err
    assert f"warning: cannot resume from {run_dir / 'checkpoints' / '6'}: {path} has" in out
    assert (run_dir / "checkpoints" / "unused" / "6").is_dir()
    assert b"\0" not in path.read_bytes()
    assert metrics(run_dir) == reference[1]

    path.unlink()
    got, _, err = main(capsys, *TINY, f"run_dir={run_dir}", "resume=true")
    assert got == 2 and "fits the run's files" in err and f"{path} is missing" in err
    assert not path.exists()


def test_run_folders_not_ours_taken_or_another_run_are_never_written(reference, tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    got, _, err = main(capsys, *TINY, f"run_dir={foreign}")
    assert got == 2 and "is not empty and is not a jlmarl run" in err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(reference[0] / "config.yaml", other / "config.yaml")
    got, _, err = main(capsys, *TINY, f"run_dir={other}", "algo.lr=0.5")
    assert got == 2 and "holds another run (algo.lr=0.001 (now 0.5))" in err
    assert [p.name for p in other.iterdir()] == ["config.yaml"]

    got, _, err = main(capsys, *TINY, f"run_dir={reference[0]}")
    assert got == 2 and "already holds this run, with checkpoints; continue it with" in err

    taken = tmp_path / "taken"
    taken.mkdir()
    owner = os.getppid()  # alive, on this host
    lock = {"pid": owner, "host": socket.gethostname(), "started": _start_time(owner), "since": "now"}
    (taken / ".lock").write_text(json.dumps(lock))
    got, _, err = main(capsys, *TINY, f"run_dir={taken}")
    assert got == 2 and f"is in use by process {owner} on {socket.gethostname()}" in err
    assert [p.name for p in taken.iterdir()] == [".lock"]

    got, _, err = main(capsys, *TINY, "run_dir=")
    assert got == 2 and len(err.strip().splitlines()) == 1 and "run_dir" in err


def test_resume_accepts_the_original_command_and_names_every_changed_key(reference):
    run_dir = reference[0]
    cfg = load_config([*TINY, f"run_dir={run_dir}", "resume=true", "total_steps=800"])
    assert cfg.algo.name == "vdn" and cfg.total_steps == 800 and cfg.num_envs == 8
    with pytest.raises(ConfigError) as error:
        load_config([*TINY, f"run_dir={run_dir}", "resume=true", "algo=qmix", "num_envs=16"])
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("algo, num_envs cannot change when resuming")
    assert "the run has algo=vdn, num_envs=8; this command algo=qmix, num_envs=16" in message


def test_bad_metrics_lines_are_named_and_skipped_by_readers_and_the_end_of_run_plot(
    reference, tmp_path, capsys
):
    run_dir = tmp_path / "r"
    shutil.copytree(reference[0], run_dir)
    path = run_dir / "metrics" / "seed_0.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = '{"env_steps": 240, "test_ret\0\0\n'
    path.write_text("".join(lines) + '{"env_steps": 4')  # and a half-written last line
    warnings = []
    records = read_metrics(path, warn=warnings.append)
    assert [r["env_steps"] for r in records] == [80, 320, 400]
    assert warnings == [f"{path}:2: not a metrics line, skipped"]
    train._plot_curves(run_dir)  # what a finished run does last
    out, err = capsys.readouterr()
    assert f"warning: {path}:2: not a metrics line, skipped" in err
    assert "no curves.png" not in out and (run_dir / "curves.png").stat().st_size > 1000
