"""Methods by name. Each entry is (module, extra build kwargs); every module
exports build(spec, cfg, **kwargs) -> Algo (the contract: jlmarl.core.algo) and may
export check_config(run_cfg) for checks that relate its keys to others (each key's
own type and range is declared in its YAML: jlmarl.config_schema). Both raise with
one sentence naming the key and the fix; build raises AlgoConfigError for settings
that do not fit the env."""

from __future__ import annotations

from types import ModuleType

from omegaconf import DictConfig, OmegaConf

from jlmarl.algos import hysteretic, i2q, limarl, lsf_sac, mmsa, pqn, value_decomposition, vdfd
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
    "mmsa": (mmsa, {}),
    "vdfd": (vdfd, {}),
    "pqn_vdn": (pqn, {"mixer": "vdn"}),
    "pqn_qmix": (pqn, {"mixer": "qmix"}),
}
ALGOS = tuple(_REGISTRY)
# The top-level config group holding a method's own keys (the rest are under `algo`).
METHOD_GROUPS = {
    "pqn_vdn": "pqn",
    "pqn_qmix": "pqn",
    "limarl": "limarl",
    "lsf_sac": "lsf_sac",
    "masac": "lsf_sac",
    "belief_i2q": "belief_i2q",
    "mmsa": "mmsa",
    "vdfd": "vdfd",
}


class UnknownAlgoError(ValueError):
    pass


def check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise UnknownAlgoError(f"unknown algo={name!r}; valid names: {', '.join(ALGOS)}")


def build(name: str, spec, cfg) -> Algo:
    """cfg: the composed run config (DictConfig or plain dict). The module's build gets
    the `algo` section and, for methods with one, their own group as `method`."""
    check_name(name)
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    module, kwargs = _REGISTRY[name]
    if name in METHOD_GROUPS:
        kwargs = {**kwargs, "method": cfg[METHOD_GROUPS[name]]}
    return module.build(spec, cfg["algo"], name=name, **kwargs)


def check_config(cfg) -> None:
    """Runs the method module's own config checks, if it has any."""
    check_name(cfg.algo.name)
    module = _REGISTRY[cfg.algo.name][0]
    if hasattr(module, "check_config"):
        module.check_config(cfg)
