"""The CLI's choice of malloc (jlmarl.allocator): which library it preloads, and when not."""

import os
import subprocess
import sys

import pytest

from jlmarl import allocator


def finder(found: dict):
    return lambda name: found.get(name)


def test_auto_preloads_tcmalloc_minimal_first_and_keeps_the_users_preload():
    env = {"PATH": "/bin", "LD_PRELOAD": "libmine.so"}
    out = allocator.preload_env(
        env, finder({"tcmalloc": "libtcmalloc.so.4", "tcmalloc_minimal": "libm.so.4"})
    )
    assert out["LD_PRELOAD"] == "libm.so.4 libmine.so"
    assert out["PATH"] == "/bin" and out["JLMARL_ALLOCATOR_PRELOADED"] == "libm.so.4"
    assert int(out["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"]) >= 1 << 40  # no stderr line per big buffer
    assert out["TCMALLOC_RELEASE_RATE"] == "0"
    assert allocator.preload_env({}, finder({"tcmalloc": "libt.so"}))["LD_PRELOAD"] == "libt.so"


def test_a_users_tcmalloc_setting_wins():
    env = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": "1000"}
    assert (
        allocator.preload_env(env, finder({"tcmalloc": "t"}))["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"]
        == "1000"
    )


@pytest.mark.parametrize(
    "env, found",
    [
        ({}, {}),  # nothing installed: the system's malloc, no re-execution
        ({"JLMARL_ALLOCATOR": "system"}, {"tcmalloc_minimal": "t"}),
        ({"JLMARL_ALLOCATOR_PRELOADED": "t"}, {"tcmalloc_minimal": "t"}),  # already re-executed: never loops
        ({"LD_PRELOAD": "/opt/libjemalloc.so.2"}, {"tcmalloc_minimal": "t"}),  # the user chose one
    ],
)
def test_runs_on_as_it_is(env, found):
    assert allocator.preload_env(env, finder(found)) is None


def test_auto_leaves_other_systems_alone():
    assert allocator.preload_env({}, finder({"tcmalloc_minimal": "t"}), platform="darwin") is None


def test_an_explicit_library_path_is_used_and_a_missing_one_is_refused(tmp_path):
    lib = tmp_path / "libmy_malloc.so"
    lib.write_bytes(b"")
    out = allocator.preload_env({"JLMARL_ALLOCATOR": str(lib)}, finder({}))
    assert out["LD_PRELOAD"] == str(lib)
    with pytest.raises(
        allocator.AllocatorError, match="JLMARL_ALLOCATOR='/no/such.so' is not a file.*'system'"
    ):
        allocator.preload_env({"JLMARL_ALLOCATOR": "/no/such.so"}, finder({}))


def test_reexec_replaces_the_process_with_the_same_command(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator.os, "execve", lambda *args: calls.append(args))
    monkeypatch.setattr(allocator.ctypes.util, "find_library", finder({"tcmalloc_minimal": "libtm.so.4"}))
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-X", "dev", "-m", "jlmarl.train", "algo=qmix"])
    monkeypatch.delenv("JLMARL_ALLOCATOR", raising=False)
    monkeypatch.delenv("JLMARL_ALLOCATOR_PRELOADED", raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    allocator.reexec_under_allocator()
    ((path, argv, env),) = calls
    assert path == sys.executable and argv == [sys.executable, "-X", "dev", "-m", "jlmarl.train", "algo=qmix"]
    assert env["LD_PRELOAD"] == "libtm.so.4" and env["JLMARL_ALLOCATOR_PRELOADED"] == "libtm.so.4"


def test_cli_refuses_a_missing_library_in_one_line_before_anything_runs(tmp_path):
    env = {**os.environ, "JLMARL_ALLOCATOR": str(tmp_path / "nope.so"), "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-m", "jlmarl.train", f"run_dir={tmp_path / 'r'}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: JLMARL_ALLOCATOR={str(tmp_path / 'nope.so')!r} is not a file; set it to a malloc library's "
        "path (e.g. libtcmalloc_minimal.so.4), to 'auto' (tcmalloc if installed) or to 'system'"
    ]
    assert not (tmp_path / "r").exists()
