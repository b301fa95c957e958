"""Methods by name. Each entry is (module, extra build kwargs); every module
exports build(spec, cfg, **kwargs) -> Algo (see jlmarl.algos.base)."""

from __future__ import annotations

import importlib

from jlmarl.algos.base import Algo

_REGISTRY: dict[str, tuple[str, dict]] = {
    "iql": ("value_decomposition", {"mixer": "none"}),
    "vdn": ("value_decomposition", {"mixer": "vdn"}),
    "qmix": ("value_decomposition", {"mixer": "qmix"}),
}
ALGOS = tuple(_REGISTRY)


class UnknownAlgoError(ValueError):
    pass


def check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise UnknownAlgoError(f"unknown algo={name!r}; valid names: {', '.join(ALGOS)}")


def build(name: str, spec, cfg) -> Algo:
    check_name(name)
    module, kwargs = _REGISTRY[name]
    return importlib.import_module(f"jlmarl.algos.{module}").build(spec, cfg, name=name, **kwargs)
