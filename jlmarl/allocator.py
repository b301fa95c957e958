"""The command lines run under tcmalloc where the machine has it.

XLA's CPU runtime allocates every program's temporary buffers afresh on each call. Under
glibc's malloc the large ones are new mappings, so the kernel zero-fills their pages on
first touch every time: one QMIX update at PyMARL2's shapes on 8m (batch 128, T = 50) took
57,951 minor page faults and 164 ms of system CPU per call; 336 ms against 232 under tcmalloc.
tcmalloc keeps the memory it frees and hands it out again without faults
(benchmarks/results/allocator.json). An allocator can only be chosen before the process
starts, so `python -m jlmarl.<command>` re-executes itself once, with the library in
LD_PRELOAD, as the first thing it does (same pid, same arguments, nothing printed). The
processes it starts (host-bridge env workers, StarCraft II) inherit the preload.

JLMARL_ALLOCATOR (environment; read before any setting, so it is not a Hydra key):
  auto     (default) on Linux, tcmalloc if the dynamic linker finds it (Debian/Ubuntu:
           `apt install libtcmalloc-minimal4`; conda: gperftools), else the system's malloc
  system   glibc's malloc, no re-execution
  <path>   that library (a tcmalloc build, or any malloc replacement) in LD_PRELOAD
Only stdlib here: it runs while the package is imported, before JAX.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Callable, Mapping

ENV_KEY = "JLMARL_ALLOCATOR"
_DONE_KEY = "JLMARL_ALLOCATOR_PRELOADED"  # set in the re-executed process: never twice
_CANDIDATES = ("tcmalloc_minimal", "tcmalloc")
# tcmalloc's settings unless the user set them: no stderr line for every allocation above
# 1 GiB (a full replay buffer is one), and freed memory kept for reuse instead of handed
# back to the kernel a little at a time (at its default release rate one 8m update still
# took 16-5,800 faults; at 0 under one: the peak stays what the run needs anyway).
TCMALLOC_DEFAULTS = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 60), "TCMALLOC_RELEASE_RATE": "0"}


class AllocatorError(ValueError):
    """JLMARL_ALLOCATOR names a library that is not there."""


def preload_env(
    env: Mapping[str, str], find: Callable[[str], str | None] | None = None, platform: str = sys.platform
) -> dict[str, str] | None:
    """The environment to re-execute with, or None to run on as we are. find: a library's
    name -> what the dynamic linker will load (default ctypes.util.find_library)."""
    find = find or ctypes.util.find_library
    choice = env.get(ENV_KEY, "auto").strip() or "auto"
    if env.get(_DONE_KEY) or choice == "system":
        return None
    if choice == "auto":
        if platform != "linux":
            return None  # LD_PRELOAD is the Linux dynamic linker's; measured only there
        if any(name in env.get("LD_PRELOAD", "") for name in ("tcmalloc", "jemalloc", "mimalloc")):
            return None  # the user preloaded an allocator already
        library = next((found for name in _CANDIDATES if (found := find(name))), None)
        if library is None:
            return None
    elif os.path.isfile(choice):
        library = choice
    else:
        raise AllocatorError(
            f"{ENV_KEY}={choice!r} is not a file; set it to a malloc library's path (e.g. "
            f"libtcmalloc_minimal.so.4), to 'auto' (tcmalloc if installed) or to 'system'"
        )
    preload = " ".join(filter(None, [library, env.get("LD_PRELOAD", "")]))
    return {**TCMALLOC_DEFAULTS, **env, "LD_PRELOAD": preload, _DONE_KEY: library}


def active(env: Mapping[str, str] = os.environ) -> str:
    """The malloc a process with this environment (default: this one) runs on: the preloaded
    library's name, or 'system'."""
    return env.get(_DONE_KEY) or "system"


def reexec_under_allocator() -> None:
    """Replace this process by itself under the chosen allocator (see the module docstring);
    returns only when there is nothing to do. A bad JLMARL_ALLOCATOR exits 2 with one line."""
    try:
        env = preload_env(os.environ)
    except AllocatorError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if env is not None:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
