"""jlmarl: cooperative multi-agent RL under partial observability on one JAX engine."""

import os
import signal
import sys

__version__ = "0.1.0"

# XLA's CPU "concurrency optimized" scheduler deadlocks on some of our programs (LIMARL's
# vmapped init on the matrix game waits forever with every thread idle; seen with jaxlib
# 0.10.2). Turn it off before JAX starts its backend, unless the user chose a setting.
_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
if _SCHEDULER_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_SCHEDULER_FLAG}=false".strip()

# `python -m jlmarl.<command>`: until the command installs its own handler (which saves a
# checkpoint and exits 130), Ctrl-C during the imports ends the process quietly instead of
# printing a KeyboardInterrupt traceback from deep inside JAX. Library imports are untouched.
if sys.argv[:1] == ["-m"]:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
