"""Traced programs kept on disk: running a command again skips Python tracing.

The persistent compilation cache (compile_cache.py) spares XLA's compile, but every run
still traces and lowers its chunk in Python first: 7-25 s for the larger learners on a
2-core CPU (benchmarks/results/compile_time_lowering.json). `jax.export` serialises the
lowered program (StableHLO). A run whose key matches one on disk (the same settings, the
same jlmarl source, the same package versions, argument types and backend) loads it
instead of tracing; the compile it then asks for is a persistent-cache hit.

The key is deliberately broad: a setting left out of it could hand a run another
run's program, so only the settings that never reach a traced function (folders,
logging, checkpoint cadence) are left out by the caller. Programs that call the host
(io_callback: the host bridge) and sharded programs are traced as before. Entries are
written to a temporary file and renamed into place, so runs sharing the folder never
read half an entry; an entry that does not load is traced again and replaced.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import jax
from jax import export

PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "distrax", "jaxmarl", "numpy", "scikit-learn")
_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # jlmarl/


@functools.cache
def source_digest() -> str:
    """sha256 over every module of jlmarl: any code change makes every key new."""
    h = hashlib.sha256()
    for path in sorted(_PACKAGE_DIR.rglob("*.py")):
        h.update(str(path.relative_to(_PACKAGE_DIR)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _arg_types(args) -> list:
    """What tracing sees of the arguments: tree structure, shapes, dtypes, weak types."""
    leaves, tree = jax.tree.flatten(args)
    return [str(tree), [(a.shape, str(a.dtype), a.weak_type) for a in map(jax.typeof, leaves)]]


def file_stamps(settings) -> dict[str, list]:
    """(size, mtime) of every file that a string setting names (each file under a named
    folder): data a trace may hold as constants (env.data=<file>.npz), so a file replaced
    at the same path makes a new key."""
    stamps = {}
    for value in jax.tree.leaves(settings):
        # only strings written as paths: a plain word (a name such as wandb's "jlmarl")
        # that happens to match a folder of the working directory is not data
        looks_like_path = isinstance(value, str) and ("/" in value or Path(value).suffix)
        if looks_like_path and Path(value).exists():
            path = Path(value)
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            stamps[value] = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return stamps


def program_key(name: str, settings: dict, args) -> str:
    material = {
        "name": name,
        "settings": settings,
        "files": file_stamps(settings),
        "source": source_digest(),
        "packages": {p: _version(p) for p in PACKAGES},
        "python": sys.version_info[:2],
        "backend": [jax.default_backend(), jax.devices()[0].device_kind, jax.device_count()],
        "config": [
            jax.config.jax_enable_x64,
            jax.config.jax_default_matmul_precision,
            jax.config.jax_numpy_dtype_promotion,
        ],
        "args": _arg_types(args),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


class Program:
    """A compiled program called with the original (pytree) arguments."""

    def __init__(self, compiled, out_tree, loaded: bool):
        self.compiled, self.out_tree, self.loaded = compiled, out_tree, loaded

    def __call__(self, *args):
        return jax.tree.unflatten(self.out_tree, self.compiled(*jax.tree.leaves(args)))


def _specs(leaves) -> list[jax.ShapeDtypeStruct]:
    """Types without placement: a restored carry (committed to its device) and a fresh one
    (uncommitted) then lower to the same program, so both hit XLA's persistent cache."""
    return [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=a.weak_type) for a in map(jax.typeof, leaves)]


def _export(fn: Callable, args) -> tuple[export.Exported, object]:
    leaves, in_tree = jax.tree.flatten(args)
    out = {}

    def flat(*xs):
        out_leaves, out["tree"] = jax.tree.flatten(fn(*jax.tree.unflatten(in_tree, xs)))
        return out_leaves

    return export.export(jax.jit(flat))(*_specs(leaves)), out["tree"]


def _load(path: Path):
    try:
        entry = pickle.loads(path.read_bytes())
        return export.deserialize(bytearray(entry["exported"])), entry["out_tree"]
    except FileNotFoundError:
        return None
    except Exception as e:  # a damaged or foreign entry: trace again and replace it
        print(f"jlmarl: ignoring the saved trace {path} ({type(e).__name__}: {e}); tracing again",
              file=sys.stderr)  # fmt: skip
        return None


def _save(path: Path, exported: export.Exported, out_tree) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = pickle.dumps({"exported": bytes(exported.serialize()), "out_tree": out_tree})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(payload)
    os.replace(tmp, path)


def compile_program(fn: Callable, args: tuple, donate: int, folder: Path | None, key: str | None):
    """`fn` (a jitted function) lowered and compiled for `args`, its first `donate`
    arguments donated. With a folder and a key, the traced program is loaded from
    `folder/<key>.jxp` when it is there and saved there when it is not; without them
    (compile_cache=false, host callbacks, sharding) it is traced as usual."""
    if folder is None or key is None:
        return fn.lower(*args).compile()
    path = folder / f"{key}.jxp"
    found = _load(path)
    loaded = found is not None
    if found is None:
        exported, out_tree = _export(fn, args)
        _save(path, exported, out_tree)
    else:
        exported, out_tree = found
    n_donated = len(jax.tree.leaves(args[:donate]))
    run = jax.jit(exported.call, donate_argnums=tuple(range(n_donated)))
    return Program(run.lower(*_specs(jax.tree.leaves(args))).compile(), out_tree, loaded)
