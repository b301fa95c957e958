"""Methods by name. Each entry is (module, extra build kwargs); every module
exports build(spec, cfg, **kwargs) -> Algo (the contract: jlmarl.core.algo), and may
export check_config(cfg) raising ValueError with one sentence naming the bad key and
the fix (called before anything is compiled). build raises AlgoConfigError for
settings that do not fit the env."""

from __future__ import annotations

from types import ModuleType

from jlmarl.algos import hysteretic, i2q, limarl, lsf_sac, value_decomposition
from jlmarl.core.algo import Algo

_REGISTRY: dict[str, tuple[ModuleType, dict]] = {
    "iql": (value_decomposition, {"mixer": "none"}),
    "vdn": (value_decomposition, {"mixer": "vdn"}),
    "qmix": (value_decomposition, {"mixer": "qmix"}),
    "limarl": (limarl, {}),
    "lsf_sac": (lsf_sac, {"messages": True}),
    "masac": (lsf_sac, {"messages": False}),
    "belief_i2q": (i2q, {"context": "belief"}),
    "rec_i2q": (i2q, {"context": "history"}),
    "rec_hyst_iql": (hysteretic, {}),
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
    return module.build(spec, cfg, name=name, **kwargs)


def check_config(cfg) -> None:
    """Runs the method module's own config checks, if it has any."""
    check_name(cfg.algo.name)
    module = _REGISTRY[cfg.algo.name][0]
    if hasattr(module, "check_config"):
        module.check_config(cfg)
