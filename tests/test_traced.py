"""Saved traces (jlmarl.core.traced): a program loaded from disk computes exactly what the
traced one does, donates what it was told to, and a damaged entry is traced again."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import OmegaConf

from jlmarl.config import load_config
from jlmarl.core import traced
from jlmarl.train import UNTRACED_KEYS, build


class Carry(NamedTuple):
    w: jax.Array
    n: jax.Array


@jax.jit
def step(carry: Carry, scale, extra: dict):
    w = jnp.tanh(carry.w @ carry.w.T) * scale + extra["b"]
    return Carry(w, carry.n + 1), {"sum": w.sum(), "n": carry.n}


def args(seed=0):
    w = jax.random.normal(jax.random.PRNGKey(seed), (4, 4))
    return Carry(w, jnp.int32(3)), np.float32(0.5), {"b": jnp.arange(4.0)}


def test_a_loaded_program_matches_the_traced_one_and_donates_the_carry(tmp_path):
    expected = step(*args())
    key = traced.program_key("step", {"lr": 1e-3}, args())
    first = traced.compile_program(step, args(), 1, tmp_path, key)
    second = traced.compile_program(step, args(), 1, tmp_path, key)
    assert not first.loaded and second.loaded and (tmp_path / f"{key}.jxp").is_file()
    for program, committed in ((first, False), (second, True)):  # a restored carry is committed
        a = jax.device_put(args(), jax.devices()[0]) if committed else args()
        got = program(*a)
        assert a[0].w.is_deleted() and not a[2]["b"].is_deleted()  # the carry only
        assert jax.tree.structure(got) == jax.tree.structure(expected)
        for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
            np.testing.assert_array_equal(x, y)


def test_the_key_follows_settings_and_argument_types():
    a = args()
    base = traced.program_key("step", {"lr": 1e-3}, a)
    assert base == traced.program_key("step", {"lr": 1e-3}, args(seed=1))  # values do not matter
    assert base != traced.program_key("step", {"lr": 3e-3}, a)
    assert base != traced.program_key("other", {"lr": 1e-3}, a)
    assert base != traced.program_key("step", {"lr": 1e-3}, (Carry(jnp.zeros((5, 4)), a[0].n), *a[1:]))
    assert base != traced.program_key("step", {"lr": 1e-3}, (a[0], np.int32(1), a[2]))
    assert base != traced.program_key("step", {"lr": 1e-3}, (a[0], 0.5, a[2]))  # a weak-typed float


def test_a_file_named_by_a_setting_is_part_of_the_key(tmp_path):
    data = tmp_path / "images.npz"
    data.write_bytes(b"first")
    first = traced.program_key("step", {"env": {"data": str(data)}}, args())
    assert first == traced.program_key("step", {"env": {"data": str(data)}}, args())
    data.write_bytes(b"second, longer")  # replaced at the same path
    assert first != traced.program_key("step", {"env": {"data": str(data)}}, args())


def test_a_damaged_entry_is_traced_again_and_replaced(tmp_path, capsys):
    key = traced.program_key("step", {}, args())
    (tmp_path / f"{key}.jxp").write_bytes(b"not a program")
    program = traced.compile_program(step, args(), 1, tmp_path, key)
    assert not program.loaded and "ignoring the saved trace" in capsys.readouterr().err
    assert traced.compile_program(step, args(), 1, tmp_path, key).loaded


def test_without_a_folder_the_program_is_traced_as_usual():
    program = traced.compile_program(step, args(), 1, None, None)
    np.testing.assert_array_equal(program(*args())[1]["sum"], step(*args())[1]["sum"])


def test_settings_left_out_of_the_key_never_reach_the_chunk():
    """The chunk lowers to the same program whatever the untraced settings say, so a
    run differing from another only in them may load its trace."""

    base = ["algo=qmix", "env=matrix_one_step", "time_buckets=1", "num_envs=2", "test_episodes=2"]
    changed = {
        "run_dir": "elsewhere", "resume": True, "total_steps": 123, "progress": False,
        "log_interval_s": 9, "plot": False, "compile_cache": False, "logger": "wandb",
        "wandb.project": "other", "checkpoint_interval": 7, "checkpoint_keep": 1,
    }  # fmt: skip
    assert {k.split(".")[0] for k in changed} == UNTRACED_KEYS

    def program(changes):
        cfg = load_config(base)
        for k, v in changes.items():  # set directly: resume=true on the command line reads run_dir
            OmegaConf.update(cfg, k, v)
        engine = build(cfg)
        carry = engine.init(engine.seed_keys([0]))
        due = np.ones(1, bool)
        return engine.chunk.lower(carry, np.int32(0), due, due).as_text()

    assert program({}) == program(changed)
