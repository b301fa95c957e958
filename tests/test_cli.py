"""The command line end to end, in subprocesses, as a user runs it."""

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from test_runs import FAST_COMPILE


def train(*args, cwd=None):
    # A hung run is aborted with SIGABRT so that faulthandler prints where every thread was.
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONFAULTHANDLER": "1", "XLA_FLAGS": FAST_COMPILE}
    command = ["timeout", "-s", "ABRT", "300", sys.executable, "-m", "jlmarl.train", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=330)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["algo=nope"], "unknown algo='nope'; valid names: iql, vdn, qmix, "),
        (["env=nope"], "unknown env='nope'; valid names: "),
        (["env=smax_2s_vs_1sc"], "env=smax_2s_vs_1sc is not supported"),
        (["algo.gamma=2"], "algo.gamma must be a number in [0, 1], got 2"),
        (["batch_size=10", "buffer_size=5"], "batch_size=10 exceeds buffer_size=5"),
        (["no_such_key=1"], "unknown key no_such_key"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(args, expected, tmp_path):
    result = train(*args, f"run_dir={tmp_path / 'r'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert not (tmp_path / "r").exists()  # nothing written before the config is known good


def test_existing_run_is_never_overwritten(tmp_path):
    (tmp_path / "r" / "metrics").mkdir(parents=True)
    (tmp_path / "r" / "metrics" / "seed_0.jsonl").write_text("precious\n")
    result = train("env=matrix_one_step", f"run_dir={tmp_path / 'r'}")
    assert result.returncode == 2 and "is not empty and is not a jlmarl run" in result.stderr
    assert (tmp_path / "r" / "metrics" / "seed_0.jsonl").read_text() == "precious\n"
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["metrics"]  # not even a lock


def test_matrix_run_writes_config_metrics_and_q_tables(tmp_path):
    run_dir = tmp_path / "m"
    result = train(
        "algo=qmix",
        "env=matrix_three_state",
        "num_seeds=2",
        "total_steps=3000",
        "num_envs=8",
        "batch_size=16",
        "test_interval=400",
        "test_episodes=4",
        "progress=false",
        "time_buckets=1",
        f"run_dir={run_dir}",
        f"compile_cache={tmp_path / 'cache'}",
    )
    assert result.returncode == 0, result.stderr
    assert "final test_return_mean" in result.stdout
    assert any((tmp_path / "cache").iterdir())  # the compiled programs were stored for the next run
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["algo"]["name"] == "qmix" and cfg["env"]["name"] == "matrix_three_state"
    assert cfg["run_dir"] == str(run_dir)
    for k in range(2):
        lines = [json.loads(x) for x in (run_dir / "metrics" / f"seed_{k}.jsonl").read_text().splitlines()]
        assert [x["seed"] for x in lines] == [k] * len(lines)
        steps = [x["env_steps"] for x in lines]
        assert steps == sorted(steps) and steps[-1] >= 3000
        assert all({"env_steps", "wall_s", "test_return_mean", "test_ep_length"} <= set(x) for x in lines)
        assert "loss" in lines[-1]
    tables = json.loads((run_dir / "q_tables.json").read_text())
    np.testing.assert_array_equal(tables["payoff"][1], [[-1, 0, 0], [0, 1, 0], [0, 0, 0]])
    # S3 is the one state the agents observe: 3000 steps teach both seeds its optimum,
    # which the table's argmax and the greedy policy's actions must both name.
    s3_best = [int(i) for i in np.unravel_index(np.argmax(tables["payoff"][2]), (3, 3))]
    assert len(tables["seeds"]) == 2
    for seed in tables["seeds"]:
        assert len(seed["states"]) == 3
        for state in seed["states"]:
            q = np.array(state["q_tot"])
            assert q.shape == (3, 3) and np.isfinite(q).all()
            assert np.array(state["q_agents"]).shape == (2, 3)
        assert seed["states"][2]["greedy"] == s3_best and seed["states"][2]["greedy_taken"] == s3_best


def test_smax_run_reports_win_rate(tmp_path):
    result = train(
        "algo=qmix",
        "env=smax_3m",
        "total_steps=150",
        "num_envs=4",
        "batch_size=4",
        "test_interval=100",
        "test_episodes=2",
        "progress=false",
        "time_buckets=1",  # one compiled update: this test is about the CLI, not buckets
        "plot=false",
        f"run_dir={tmp_path / 's'}",
    )
    assert result.returncode == 0, result.stderr
    assert "final test_win_rate" in result.stdout
    line = json.loads((tmp_path / "s" / "metrics" / "seed_0.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= line["test_win_rate"] <= 1.0 and "win_rate" in line


@pytest.mark.parametrize("module", ["jlmarl.evaluate", "jlmarl.compare", "jlmarl.pretrain_belief"])
def test_every_command_prints_its_usage_on_help(module, capsys):
    importlib.import_module(module).main(["--help"])
    assert capsys.readouterr().out.startswith(f"python -m {module} ")
