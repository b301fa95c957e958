import os
import tempfile

# Tests run on CPU with deterministic, small programs.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the session, shared with the CLI subprocesses
# (they inherit the environment): runs of the same program compile once.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="jlmarl-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# The suite's time is mostly XLA compiling small programs: LLVM's optimisation level 0
# compiles them about twice as fast (tests/test_mmsa.py 104 -> 61 s) and runs tiny
# programs no slower. It changes no numbers: XLA's CPU float semantics (no fast-math)
# fix the order of every operation at any level, as tests/test_regression.py checks.
_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()

import pytest  # noqa: E402

from jlmarl.config import load_config  # noqa: E402


@pytest.fixture
def make_cfg(tmp_path):
    """Composes the real Hydra config with overrides; run_dir inside tmp_path."""

    def make(*overrides, run_name="run"):
        return load_config([f"run_dir={tmp_path / run_name}", "progress=false", *overrides])

    return make
