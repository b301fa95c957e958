"""jlmarl: cooperative multi-agent RL under partial observability on one JAX engine."""

import os
import signal
import sys
from importlib import metadata, util

from jlmarl.allocator import reexec_under_allocator

__version__ = "0.1.0"

# XLA's CPU "concurrency optimized" scheduler deadlocks on some of our programs (LIMARL's
# vmapped init on the matrix game waits forever with every thread idle; seen with jaxlib
# 0.10.2). Turn it off before JAX starts its backend, unless the user chose a setting.
_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
if _SCHEDULER_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_SCHEDULER_FLAG}=false".strip()


def _cpu_only() -> bool:
    """True when JAX can only run on the CPU here: JAX_PLATFORMS=cpu, or no GPU/TPU plugin
    installed (read from the package metadata; JAX is not started)."""
    if os.environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu":
        return True
    plugins = metadata.entry_points(group="jax_plugins")
    return not plugins and util.find_spec("jax_plugins") is None and util.find_spec("libtpu") is None


# LLVM optimisation level 1 for XLA's CPU code instead of XLA's default 3: on our chunks it
# compiles faster and runs faster (smax_3m, 64 envs: training throughput QMIX +22%, MMSA
# +30%, LIMARL +36%, VDFD equal; benchmarks/results/xla_opt_level.json). Only on CPU-only
# installs: the flag also sets the GPU backends' LLVM level, which we have not measured.
_OPT_FLAG = "--xla_backend_optimization_level"
if _OPT_FLAG not in os.environ.get("XLA_FLAGS", "") and _cpu_only():
    os.environ["XLA_FLAGS"] = f"{os.environ['XLA_FLAGS']} {_OPT_FLAG}=1"

# `python -m jlmarl.<command>`: until the command installs its own handler (which saves a
# checkpoint and exits 130), Ctrl-C during the imports ends the process quietly instead of
# printing a KeyboardInterrupt traceback from deep inside JAX. Library imports are untouched.
if sys.argv[:1] == ["-m"]:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # ... and it runs under tcmalloc where the machine has it (XLA's CPU buffers page-fault
    # under glibc's malloc on every call): jlmarl.allocator, JLMARL_ALLOCATOR=system to opt out.
    reexec_under_allocator()
