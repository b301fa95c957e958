"""Whole runs as a user runs them: kill and resume, Ctrl-C, wandb, seed sharding,
evaluation and curves (subprocesses; the session's compilation cache makes every
run after the first cheap)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jlmarl.core.metrics_log import read_run

TINY_SETTINGS = {
    "algo": "vdn",
    "env": "matrix_three_state",
    "num_seeds": 2,
    "num_envs": 8,
    "batch_size": 16,
    "buffer_size": 64,
    "total_steps": 8000,
    "test_interval": 800,
    "test_episodes": 4,
    "checkpoint_interval": 1600,
    "time_buckets": 1,
    "progress": "false",
    "log_interval_s": 0,
}


def tiny(**changes) -> list[str]:
    return [f"{k}={v}" for k, v in {**TINY_SETTINGS, **changes}.items()]


TINY = tiny()


def command(*args, module="jlmarl.train"):
    return ["timeout", "-s", "ABRT", "300", sys.executable, "-m", module, *args]


# Tiny runs spend their time compiling; these XLA flags halve it (same numbers in every run).
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def environment(**extra):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONFAULTHANDLER": "1", "XLA_FLAGS": FAST_COMPILE}
    if "XLA_FLAGS" in extra:
        extra = {**extra, "XLA_FLAGS": f"{FAST_COMPILE} {extra['XLA_FLAGS']}"}
    return {**env, **extra}


def train(*args, **env):
    return subprocess.run(command(*args), capture_output=True, text=True, env=environment(**env), timeout=330)


def without_wall(run_dir: Path) -> list[list[dict]]:
    timing = {"wall_s", "env_steps_per_s"}
    return [[{k: v for k, v in r.items() if k not in timing} for r in seed] for seed in read_run(run_dir)]


def finished_checkpoints(run_dir: Path) -> list[int]:
    folder = run_dir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def start_and_wait_for_checkpoint(run_dir: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        command(*TINY, f"run_dir={run_dir}", "plot=false"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
        start_new_session=True,  # its own process group: kill -9 reaches the run, not only `timeout`
    )
    deadline = time.time() + 300
    while not finished_checkpoints(run_dir):
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    return process


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The tiny run, never interrupted, with wandb offline."""
    run_dir = tmp_path_factory.mktemp("runs") / "reference"
    result = train(*TINY, f"run_dir={run_dir}", "logger=wandb", WANDB_SILENT="true")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


def test_reference_run_logs_progress_metrics_curves_and_wandb(reference_run):
    run_dir, result = reference_run
    lines = [line for line in result.stdout.splitlines() if line.startswith("env_steps ")]
    assert len(lines) >= 10 and lines[-1].startswith("env_steps 8000/8000 (100%)")  # one per chunk
    seeds = read_run(run_dir)
    assert len(seeds) == 2
    for records in seeds:
        steps = [r["env_steps"] for r in records]
        assert steps == sorted(set(steps)) and steps[-1] == 8000
    assert (run_dir / "curves.png").stat().st_size > 1000
    # one offline wandb run per seed, each with its own run file, nothing sent anywhere
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2
    for folder in offline:
        assert list(folder.glob("run-*.wandb")), list(folder.iterdir())


def test_sigkill_then_resume_matches_the_uninterrupted_run(reference_run, tmp_path):
    run_dir = tmp_path / "killed"
    process = start_and_wait_for_checkpoint(run_dir)
    os.killpg(process.pid, signal.SIGKILL)  # `timeout` cannot pass SIGKILL on to the run
    process.wait()
    assert process.returncode == -signal.SIGKILL
    before = read_run(run_dir)  # every complete line parses
    assert max(len(s) for s in before) < len(read_run(reference_run[0])[0])

    result = train("resume=true", f"run_dir={run_dir}", "plot=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming" in result.stdout
    assert without_wall(run_dir) == without_wall(reference_run[0])  # identical, no duplicated lines


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_identically(reference_run, tmp_path):
    run_dir = tmp_path / "interrupted"
    process = start_and_wait_for_checkpoint(run_dir)
    first = finished_checkpoints(run_dir)[-1]
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "checkpoint saved" in stderr and "Traceback" not in stderr
    # saved on the signal (the same chunk if the signal came right after a scheduled save)
    assert finished_checkpoints(run_dir)[-1] >= first

    result = train("resume=true", f"run_dir={run_dir}", "plot=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert without_wall(run_dir) == without_wall(reference_run[0])


def test_resume_refuses_changed_settings(reference_run):
    result = train("resume=true", f"run_dir={reference_run[0]}", "algo.lr=0.5")
    assert result.returncode == 2
    assert "algo.lr cannot change when resuming (the run has algo.lr=0.001; this command algo.lr=0.5)" in (
        result.stderr
    )


def test_evaluate_prints_a_table_and_writes_eval_json(reference_run):
    run_dir = reference_run[0]
    result = subprocess.run(
        command(f"run_dir={run_dir}", "episodes=6", module="jlmarl.evaluate"),
        capture_output=True,
        text=True,
        env=environment(),
        timeout=330,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["seeds"] == [0, 1] and report["episodes_per_seed"] == 6
    assert report["env_steps"] == [8000, 8000]
    returns = report["per_seed"]["return_mean"]
    assert len(returns) == 2 and report["summary"]["return_mean"]["mean"] == pytest.approx(np.mean(returns))
    low, high = report["summary"]["return_mean"]["ci95"]
    assert min(returns) <= low <= high <= max(returns)
    assert report["per_seed"]["ep_length"] == [10.0, 10.0]
    assert "95% CI" in result.stdout


def test_seeds_sharded_over_four_devices_match_one_device(tmp_path):
    """XLA_FLAGS fakes 4 CPU devices. Each device runs the single-device program on its
    seed (shard_map); XLA's CPU kernels still round sums differently with the layout,
    so float metrics agree to ~1e-6 relative and everything discrete exactly."""
    args = tiny(num_seeds=4, total_steps=2400, checkpoint_interval=100000, plot="false")
    flags = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    sharded = train(*args, f"run_dir={tmp_path / 'sharded'}", **flags)
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    assert "on 4 devices" in sharded.stdout
    single = train(*args, f"run_dir={tmp_path / 'single'}", "devices=1", **flags)
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = read_run(tmp_path / "sharded"), read_run(tmp_path / "single")
    assert [len(s) for s in a] == [len(s) for s in b] == [4, 4, 4, 4]
    for seed_a, seed_b in zip(a, b, strict=True):
        for ra, rb in zip(seed_a, seed_b, strict=True):
            assert ra.keys() == rb.keys()
            for key in ra.keys() - {"wall_s", "env_steps_per_s"}:
                assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), key
    bad = train(*tiny(num_seeds=3), f"run_dir={tmp_path / 'bad'}", **flags)
    assert bad.returncode == 2
    assert "num_seeds=3 cannot be split evenly over 4 devices" in bad.stderr


@pytest.mark.slow
def test_two_processes_joined_by_jax_distributed_train_like_one(tmp_path):
    """The multi-host path (distributed.*) with two processes on this machine (CPU
    collectives over gloo): process 0 writes the metrics; they match one process."""
    args = tiny(num_seeds=2, total_steps=800, checkpoint_interval=100000, plot="false")
    shared = ["distributed.enabled=true", "distributed.coordinator_address=localhost:12391"]
    processes = [
        subprocess.Popen(
            command(
                *args,
                f"run_dir={tmp_path / 'multi'}",
                *shared,
                "distributed.num_processes=2",
                f"distributed.process_id={i}",
            ),  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        for i in range(2)
    ]
    for p in processes:
        _, stderr = p.communicate(timeout=330)
        assert p.returncode == 0, stderr[-3000:]
    single = train(*args, f"run_dir={tmp_path / 'single'}")
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = read_run(tmp_path / "multi"), read_run(tmp_path / "single")
    assert [len(s) for s in a] == [len(s) for s in b]
    for seed_a, seed_b in zip(a, b, strict=True):
        for ra, rb in zip(seed_a, seed_b, strict=True):
            for key in ra.keys() - {"wall_s", "env_steps_per_s"}:
                assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), key
