"""Environment names -> constructors.

Modules register their envs at import time (`jlmarl.envs` imports them all);
constructors import heavy third-party packages lazily, so listing names is cheap.
Names that we know of but cannot build here (e.g. SMAC maps with units SMAX
lacks) are registered as unsupported with the reason and the way out.
"""

from __future__ import annotations

from collections.abc import Callable

from jlmarl.envs.base import Env

_CONSTRUCTORS: dict[str, Callable[..., Env]] = {}
_UNSUPPORTED: dict[str, str] = {}


class UnknownEnvError(ValueError):
    pass


def register(name: str, constructor: Callable[..., Env]) -> None:
    if name in _CONSTRUCTORS or name in _UNSUPPORTED:
        raise ValueError(f"env {name!r} is registered twice")
    _CONSTRUCTORS[name] = constructor


def register_unsupported(name: str, reason: str) -> None:
    if name in _CONSTRUCTORS or name in _UNSUPPORTED:
        raise ValueError(f"env {name!r} is registered twice")
    _UNSUPPORTED[name] = reason


def names() -> list[str]:
    """Every env name that `make` can build."""
    return sorted(_CONSTRUCTORS)


def check_name(name: str) -> None:
    """Raises UnknownEnvError with one line that names the fix."""
    if name in _CONSTRUCTORS:
        return
    if name in _UNSUPPORTED:
        raise UnknownEnvError(f"env={name} is not supported: {_UNSUPPORTED[name]}")
    raise UnknownEnvError(f"unknown env={name!r}; valid names: {', '.join(names())}")


def make(name: str, **kwargs) -> Env:
    check_name(name)
    return _CONSTRUCTORS[name](**kwargs)
