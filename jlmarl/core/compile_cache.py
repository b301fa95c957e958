"""JAX's persistent compilation cache, on by default for every command.

A program compiled once (a training chunk, an evaluation) is stored on disk and
loaded by the next run that compiles the same program on the same machine and
package versions, so re-running a command skips most of its compile. JAX writes
each entry to a temporary file and renames it into place, so runs sharing the
folder at the same time do not corrupt it.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

DEFAULT_DIR = Path("~/.cache/jlmarl/jax")
MIN_COMPILE_S = 0.5  # programs that compile faster than this are not worth a file


def cache_dir(setting) -> Path | None:
    """The folder for `compile_cache=<setting>`: "default" = $JAX_COMPILATION_CACHE_DIR when
    set, else ~/.cache/jlmarl/jax; true = the same; false = no cache; else the folder given."""
    if setting is False or setting is None:
        return None
    if setting is True or setting == "default":
        env = os.environ.get("JAX_COMPILATION_CACHE_DIR")
        return Path(env) if env else DEFAULT_DIR.expanduser()
    return Path(str(setting)).expanduser()


def enable(setting) -> Path | None:
    """Points JAX at the cache folder of `setting` (see cache_dir); returns it."""
    path = cache_dir(setting)
    if path is None:
        return None
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    return path
