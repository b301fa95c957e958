"""Sweeps in Hydra's multirun syntax (jlmarl.multirun), with stand-in runs: the
combinations, their folders, the upfront check, skipping finished runs and the report."""

import json

import pytest

from jlmarl.config import ConfigError
from jlmarl.multirun import combinations, folder_name, is_multirun, sweep


def test_combinations_follow_hydras_order_and_keep_fixed_settings():
    plan = combinations(["algo=qmix,vdn", "env=smax_3m", "seed=range(0,2)"])
    assert [swept for _, swept in plan] == [
        ["algo=qmix", "seed=0"],
        ["algo=qmix", "seed=1"],
        ["algo=vdn", "seed=0"],
        ["algo=vdn", "seed=1"],
    ]
    assert plan[0][0] == ["algo=qmix", "env=smax_3m", "seed=0"]
    assert (
        folder_name(["algo=qmix", "algo.lr=0.001", "env.map=a/b"]) == "algo-qmix__algo.lr-0.001__env.map-a_b"
    )
    assert is_multirun(["-m", "algo=qmix,vdn"]) and not is_multirun(["algo=qmix"])
    assert combinations(["algo=qmix"]) == [(["algo=qmix"], [])] and folder_name([]) == "run"


class Recorder:
    def __init__(self, fail_on=None):
        self.checked, self.ran, self.compared, self.fail_on = [], [], [], fail_on

    def check(self, overrides):
        self.checked.append(overrides)
        if self.fail_on and self.fail_on in overrides:
            raise ConfigError("algo.lr must be > 0")

    def run_one(self, overrides):
        self.ran.append(overrides)
        if "stop" in overrides:
            raise KeyboardInterrupt
        return {"wall_s": 1.0}

    def compare(self, run_dirs, out):
        self.compared.append((run_dirs, out))
        return {}


def test_sweep_runs_every_combination_once_then_skips_them(tmp_path):
    argv = ["-m", "algo=qmix,vdn", "env=matrix_three_state", f"run_dir={tmp_path}"]
    first = Recorder()
    sweep(argv, first.check, first.run_one, first.compare, say=lambda _: None)
    assert [o[-1] for o in first.ran] == [f"run_dir={tmp_path}/algo-qmix", f"run_dir={tmp_path}/algo-vdn"]
    assert first.ran[0][:2] == ["algo=qmix", "env=matrix_three_state"]
    assert first.compared == [([tmp_path / "algo-qmix", tmp_path / "algo-vdn"], tmp_path / "compare")]
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert set(record["runs"]) == {"algo-qmix", "algo-vdn"}
    again = Recorder()
    sweep(argv, again.check, again.run_one, again.compare, say=lambda _: None)
    assert again.ran == [] and len(again.compared) == 1  # finished runs are skipped, the report remade


def test_an_interrupted_sweep_continues_where_it_stopped(tmp_path):
    stopper = Recorder()
    argv = ["-m", "algo=qmix,vdn", "env=a,stop", f"run_dir={tmp_path}"]
    stopper_run = stopper.run_one
    with pytest.raises(KeyboardInterrupt):
        sweep(
            argv,
            stopper.check,
            lambda o: stopper_run([*o, "stop"] if "env=stop" in o else o),
            stopper.compare,
        )
    assert len(stopper.ran) == 2 and stopper.compared == []
    rest = Recorder()
    sweep(argv, rest.check, rest.run_one, rest.compare, say=lambda _: None)
    assert [o[-1].rsplit("/", 1)[1] for o in rest.ran] == [
        "algo-qmix__env-stop",
        "algo-vdn__env-a",
        "algo-vdn__env-stop",
    ]


def test_a_bad_combination_is_refused_before_anything_runs(tmp_path):
    bad = Recorder(fail_on="algo.lr=-1")
    with pytest.raises(ConfigError, match=r"sweep combination algo.lr--1: algo.lr must be > 0"):
        sweep(["-m", "algo.lr=0.001,-1", f"run_dir={tmp_path}"], bad.check, bad.run_one, bad.compare)
    assert bad.ran == [] and not (tmp_path / "sweep.json").exists()
    for argv, needle in (
        (["-m", "algo=qmix,vdn", "algo=iql,vdn"], "swept twice"),
        (["-m", "algo=qmix,vdn", "resume=true"], "resume= is not a sweep setting"),
        (["-m", "algo=qmix,,"], "cannot read the sweep's overrides"),
    ):
        with pytest.raises(ConfigError, match=needle):
            sweep([*argv, f"run_dir={tmp_path}"], bad.check, bad.run_one, bad.compare)


def test_a_sweep_whose_runs_cannot_be_compared_is_refused_before_anything_runs(tmp_path):
    """Methods may default to different evaluation intervals (PQN's chunk is 16,384 steps);
    compare needs one grid, so the sweep says so before hours of training, not after."""
    from omegaconf import OmegaConf

    interval = {"algo=qmix": 10000, "algo=pqn_vdn": 20000}
    rec = Recorder()
    check = lambda o: OmegaConf.create({"test_interval": interval[o[0]], "total_steps": 10})  # noqa: E731
    with pytest.raises(ConfigError, match=r"different test_interval \(algo-qmix 10000, algo-pqn_vdn 20000\)"):
        sweep(["-m", "algo=qmix,pqn_vdn", f"run_dir={tmp_path}"], check, rec.run_one, rec.compare)
    assert rec.ran == []
    same = lambda o: OmegaConf.create({"test_interval": 20000})  # noqa: E731
    sweep(
        ["-m", "algo=qmix,pqn_vdn", f"run_dir={tmp_path}"], same, rec.run_one, rec.compare, say=lambda _: None
    )
    assert len(rec.ran) == 2
