"""Config validation, checkpoint fallback and refusal, curves, and the non-finite stop."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jlmarl.config import ConfigError, load_config
from jlmarl.core.checkpoint import Checkpointer, CheckpointError, abstract_like
from jlmarl.plot import bootstrap_ci, plot_runs, run_curves


@pytest.mark.parametrize(
    "override, message",
    [
        ("algo.lr=0", "algo.lr must be a number > 0, got 0"),
        ("algo.lr=fast", "algo.lr must be a number > 0, got 'fast'"),
        ("algo.gamma=1.5", "algo.gamma must be a number in [0, 1], got 1.5"),
        ("algo.td_lambda=-0.1", "algo.td_lambda must be a number in [0, 1], got -0.1"),
        ("algo.epsilon_finish=2", "algo.epsilon_finish must be a number in [0, 1], got 2"),
        ("algo.grad_norm_clip=0", "algo.grad_norm_clip must be a number > 0, got 0"),
        ("total_steps=0", "total_steps must be an integer >= 1, got 0"),
        ("num_envs=2.5", "num_envs must be an integer >= 1, got 2.5"),
        ("num_seeds=0", "num_seeds must be an integer >= 1, got 0"),
        ("seed=-1", "seed must be an integer >= 0, got -1"),
        ("batch_size=6000", "batch_size=6000 exceeds buffer_size=5000"),
        ("episodes_per_update=0", "episodes_per_update must be a number > 0, got 0"),
        ("checkpoint_interval=0", "checkpoint_interval must be an integer >= 1, got 0"),
        ("checkpoint_keep=-1", "checkpoint_keep must be an integer >= 1, got -1"),
        ("checkpoint_buffer=maybe", "checkpoint_buffer must be true or false, got 'maybe'"),
        ("progress=2", "progress must be true or false, got 2"),
        ("log_interval_s=-1", "log_interval_s must be a number >= 0, got -1"),
        ("logger=tensorboard", "logger must be one of none, wandb, got 'tensorboard'"),
        ("wandb.mode=cloud", "wandb.mode must be one of offline, online, disabled, got 'cloud'"),
        ("devices=0", "devices must be an integer >= 1 or null, got 0"),
        ("distributed.enabled=true", "distributed.coordinator_address must be host:port of process 0"),
        ("algo=nope", "unknown algo='nope'"),
        ("env=nope", "unknown env='nope'"),
    ],
)
def test_every_bad_setting_is_one_sentence_naming_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        load_config([override])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "num_envs, episodes_per_update, updates",
    [(16, 8, 2), (12, 8, 1), (4, 8, 1), (16, 0.1, 160), (16, 0.25, 64), (3, 0.1, 30)],
)
def test_updates_per_chunk_counts_down_to_several_per_episode(num_envs, episodes_per_update, updates):
    from jlmarl.core.engine import EngineConfig

    cfg = load_config([f"num_envs={num_envs}", f"episodes_per_update={episodes_per_update}"])
    assert EngineConfig.from_cfg(cfg).updates_per_chunk == updates


def test_distributed_process_id_range():
    with pytest.raises(ConfigError, match=r"distributed.process_id must be in \[0, 2\), got 2"):
        load_config(
            [
                "distributed.enabled=true",
                "distributed.coordinator_address=host:1234",
                "distributed.num_processes=2",
                "distributed.process_id=2",
            ]
        )


def _tree(value: float):
    return {"params": jnp.full((3, 2), value), "key": jax.random.PRNGKey(1), "count": jnp.int32(7)}


def _checkpointer(run_dir, algo="vdn"):
    return Checkpointer(run_dir, keep=3, identity={"algo": algo, "env": "matrix_three_state"})


def test_checkpoint_round_trip_and_fallback_past_a_corrupted_one(tmp_path):
    ckpt = _checkpointer(tmp_path)
    ckpt.save(1, _tree(1.0), {"chunk_idx": 1})
    ckpt.save(2, _tree(2.0), {"chunk_idx": 2})
    carry, driver, step = ckpt.restore_latest(abstract_like(_tree(0.0)))
    assert step == 2 and driver == {"chunk_idx": 2}
    np.testing.assert_array_equal(carry["params"], np.full((3, 2), 2.0))
    assert carry["count"] == 7 and carry["key"].tolist() == jax.random.PRNGKey(1).tolist()

    for data in (tmp_path / "checkpoints" / "2" / "state").rglob("*"):  # truncate every file
        if data.is_file():
            data.write_bytes(data.read_bytes()[:7])
    said = []
    carry, driver, step = _checkpointer(tmp_path).restore_latest(abstract_like(_tree(0.0)), say=said.append)
    assert step == 1 and driver == {"chunk_idx": 1}
    assert float(carry["params"][0, 0]) == 1.0
    assert said[0].startswith(f"warning: cannot resume from {tmp_path / 'checkpoints' / '2'}")
    assert said[1] == f"resuming from the newest good checkpoint, {tmp_path / 'checkpoints' / '1'}"


def test_checkpoint_of_another_run_or_shape_is_refused_with_the_mismatch(tmp_path):
    _checkpointer(tmp_path).save(1, _tree(1.0), {})
    with pytest.raises(CheckpointError) as error:
        _checkpointer(tmp_path, algo="qmix").restore_latest(abstract_like(_tree(0.0)), say=lambda _: None)
    message = str(error.value)
    assert str(tmp_path / "checkpoints" / "1") in message
    assert "algo='vdn' (this run: 'qmix')" in message
    wrong_shape = {**_tree(0.0), "params": jnp.zeros((4, 2))}
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        _checkpointer(tmp_path).restore_latest(abstract_like(wrong_shape), say=lambda _: None)


def _fake_run(run_dir, algo, curves):
    (run_dir / "metrics").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"algo:\n  name: {algo}\nenv:\n  name: matrix_one_step\n")
    for k, points in enumerate(curves):
        lines = [json.dumps({"env_steps": s, "test_return_mean": v}) for s, v in points]
        (run_dir / "metrics" / f"seed_{k}.jsonl").write_text("\n".join(lines) + '\n{"env_steps": 9')


def test_plot_draws_one_labelled_line_per_run_on_a_common_grid(tmp_path):
    _fake_run(tmp_path / "a", "vdn", [[(0, 0.0), (100, 1.0), (200, 2.0)], [(0, 0.0), (110, 3.0), (210, 4.0)]])
    _fake_run(tmp_path / "b", "qmix", [[(0, 1.0), (100, 1.0)]])
    steps, values = run_curves(tmp_path / "a", "test_return_mean")
    assert steps.tolist() == [0, 100, 110, 200]  # stops at the shortest seed; half line skipped
    np.testing.assert_allclose(values[1], [0.0, 100 / 110 * 3.0, 3.0, 3.0 + 90 / 100])
    out, labels = plot_runs([tmp_path / "a", tmp_path / "b"], "test_return_mean", tmp_path / "c.png")
    assert labels == ["vdn/matrix_one_step (2 seeds)", "qmix/matrix_one_step (1 seed)"]
    assert Image.open(out).size[0] > 100


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_agreement():
    values = np.array([[0.0], [1.0], [2.0], [3.0]])
    low, high = bootstrap_ci(values)
    assert low[0] < 1.5 < high[0]
    tight_low, tight_high = bootstrap_ci(np.array([[1.0], [1.0], [1.01], [0.99]]))
    assert tight_high[0] - tight_low[0] < 0.05 < high[0] - low[0]


def test_non_finite_loss_stops_the_run_naming_step_and_metric(tmp_path, capsys):
    from jlmarl.train import main

    with pytest.raises(SystemExit) as stop:
        main(
            [
                "algo=vdn",
                "env=matrix_one_step",
                "algo.lr=1e30",
                "num_envs=8",
                "batch_size=8",
                "total_steps=400",
                "time_buckets=1",
                "progress=false",
                "plot=false",
                f"run_dir={tmp_path / 'nan'}",
            ]
        )
    assert stop.value.code == 3
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: non-finite ")
    assert "in seed 0 at env_steps " in error and "last good checkpoint: none yet" in error


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"JAX_PLATFORMS": "cpu"}, "--xla_backend_optimization_level=1"),
        ({"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_backend_optimization_level=3"}, None),
    ],
)
def test_import_sets_the_cpu_llvm_level_unless_the_user_chose_one(env, expected):
    base = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = "import os, jlmarl; print(os.environ['XLA_FLAGS'])"
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True)
    flags = out.stdout.split()
    levels = [f for f in flags if f.startswith("--xla_backend_optimization_level")]
    assert levels == [expected or env["XLA_FLAGS"]]
