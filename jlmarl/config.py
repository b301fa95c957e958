"""Composing and checking run configurations (Hydra's compose API).

Errors are raised as ConfigError with one sentence naming the key and the fix,
before anything is compiled or written.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from jlmarl import algos, config_schema, envs

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    pass


def _selected(overrides: list[str], group: str) -> str | None:
    for o in overrides:
        if o.startswith(f"{group}="):
            return o.split("=", 1)[1]
    return None


# Keys a resumed run may change; everything else is fixed by the run's config.yaml.
RESUMABLE_KEYS = (
    "resume", "run_dir", "total_steps", "progress", "log_interval_s", "plot", "logger", "wandb.",
    "checkpoint_interval", "checkpoint_keep", "devices", "distributed.", "compile_cache",
)  # fmt: skip


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("true", "1", "yes")


def load_config(overrides: list[str]) -> DictConfig:
    """Composes configs/config.yaml with `key=value` overrides and validates it;
    with resume=true, loads the run's own config.yaml instead (see load_resume_config)."""
    if _truthy(_selected(overrides, "resume")):
        return load_resume_config(overrides)
    algo, env = _selected(overrides, "algo"), _selected(overrides, "env")
    try:
        if algo is not None:
            algos.check_name(algo)
        if env is not None:
            envs.check_name(env)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    overrides = [_renamed(o) for o in overrides]
    _warn_repeated(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            cfg = compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        first = str(e).strip().splitlines()[0]
        unknown = re.search(r"Could not override '([^']+)'|Key '([^']+)' is not in struct", first)
        if unknown:
            key = unknown.group(1) or unknown.group(2)
            declared = config_schema.schema()
            if key in declared:  # a real key of another method or env (e.g. in a mixed sweep)
                where = declared[key].source.rsplit(":", 1)[0]
                chosen = (
                    " ".join(f"{g}={v}" for g, v in (("algo", algo), ("env", env)) if v) or "the defaults"
                )
                raise ConfigError(
                    f"{key} is not a setting of {chosen}: it belongs to "
                    f"configs/{where}, which this run's config does not include; remove it for this run"
                ) from None
            near = config_schema.closest_key(key, declared)
            hint = f" (did you mean {near}?)" if near else ""
            raise ConfigError(f"unknown key {key}{hint}; see configs/ for every key") from None
        raise ConfigError(f"bad override: {first}") from None
    validate(cfg)
    return cfg


# Old spellings of method keys, accepted for one release with a warning (the learner
# toolkit moved each method's own keys into a top-level group named after it).
DEPRECATED = {
    "algo.belief.": "belief_i2q.",
    "algo.limarl.": "limarl.",
    "algo.message_dim": "lsf_sac.message_dim",
    "algo.message_beta": "lsf_sac.message_beta",
    "algo.message_coef": "lsf_sac.message_coef",
    "algo.fixed_alpha": "lsf_sac.fixed_alpha",
    "algo.double_q": "lsf_sac.double_q",
    "algo.target": "lsf_sac.target",
}


def _warn_repeated(overrides: list[str]) -> None:
    """One warning per key given more than once (the last value wins, as in Hydra)."""
    seen: dict[str, str] = {}
    for o in overrides:
        key, _, value = o.partition("=")
        key = key.lstrip("+~")
        if key in seen and seen[key] != value:
            print(
                f"warning: {key} is given twice ({key}={seen[key]}, then {key}={value}); the last wins",
                file=sys.stderr,
            )
        seen[key] = value


def usage() -> str:
    """What `python -m jlmarl.train --help` prints: the command forms, the groups and every
    declared key with its type and range (configs/ documents each)."""
    lines = [
        "usage: python -m jlmarl.train [algo=<algo>] [env=<env>] [key=value ...]",
        "       python -m jlmarl.train <the same arguments> resume=true   (continue a run)",
        "       python -m jlmarl.train -m algo=qmix,vdn env=smax_3m,smax_2s3z [run_dir=SWEEP]",
        "           (a sweep: every combination, one after the other; the same command continues it)",
        "",
        f"algo: {', '.join(algos.ALGOS)}",
        f"env:  {', '.join(envs.names())}",
        "",
        "keys (type and range as declared in configs/; defaults and meanings are in the YAML files):",
    ]
    for key, decl in sorted(config_schema.schema().items()):
        lines.append(f"  {key:<36} {decl.describe()}")
    return "\n".join(lines)


def _renamed(override: str) -> str:
    """An override with a deprecated key spelled the new way (and a warning saying so)."""
    key, sep, value = override.partition("=")
    for old, new in DEPRECATED.items():
        if key == old or (old.endswith(".") and key.startswith(old)):
            now = new + key[len(old) :] if old.endswith(".") else new
            print(f"warning: {key} is deprecated, use {now} (removed in the next release)", file=sys.stderr)
            return f"{now}{sep}{value}"
    return override


def load_resume_config(overrides: list[str]) -> DictConfig:
    """The config saved in run_dir/config.yaml, with the keys a resumed run may change
    (RESUMABLE_KEYS) overridden. The command may repeat the run's own arguments
    (`<original args> resume=true`): a group name (algo=, env=) or key given at its
    saved value is accepted; frozen keys given a new value are refused, all of them
    in one line with the old and new value."""
    run_dir = _selected(overrides, "run_dir")
    _check(run_dir not in (None, "", "null"), "resume=true needs run_dir=<the run to continue>")
    saved = Path(run_dir) / "config.yaml"
    _check(saved.is_file(), f"resume=true: {saved} not found; run_dir must be an existing run's folder")
    try:
        cfg = OmegaConf.load(saved)
    except (OSError, ValueError, OmegaConfBaseException) as e:  # yaml errors are ValueErrors
        raise ConfigError(f"resume=true: {saved} cannot be read ({str(e).splitlines()[0]})") from None
    _add_new_keys(cfg, saved)
    changes = []
    for override in [_renamed(o) for o in overrides]:  # the saved config has the new spellings
        key, sep, value = override.partition("=")
        _check(bool(sep), f"bad override {override!r}: expected key=value")
        key = key.lstrip("+~")
        try:
            new = _parse_value(value)
        except Exception as e:  # noqa: BLE001  (Hydra's parser raises several kinds)
            raise ConfigError(f"bad override {override!r}: {str(e).strip().splitlines()[0]}") from None
        if key in ("algo", "env"):  # a config group: the run's saved group is its name
            old = OmegaConf.select(cfg, f"{key}.name")
            if old != new:
                changes.append((key, old, new))
        elif _resumable(key):
            try:
                OmegaConf.update(cfg, key, OmegaConf.create({"v": new}).v, force_add=True)
            except OmegaConfBaseException as e:
                raise ConfigError(f"bad override {override!r}: {str(e).splitlines()[0]}") from None
        else:
            old = OmegaConf.select(cfg, key, default=_UNSET)
            if not _same_value(old, new):
                changes.append((key, old, new))
    if changes:
        raise ConfigError(_changes_text(changes))
    validate(cfg)
    return cfg


_UNSET = "<unset>"

# Keys added with a default that changes behaviour: a run saved before them resumes with the
# value that reproduces what it ran with (LBF's state was the raw concatenation before; MMSA's
# Q was the SALE head alone).
VALUE_BEFORE_ADDED = {"env.normalize_state": False, "mmsa.history_head": False}


def _add_new_keys(cfg: DictConfig, saved: Path) -> None:
    """Settings added to jlmarl after the run was saved take their defaults (a new key's
    default keeps the old behaviour, or VALUE_BEFORE_ADDED gives the value that does), so a
    run started by an older jlmarl resumes; the keys filled in are named on stderr."""
    algo, env = OmegaConf.select(cfg, "algo.name"), OmegaConf.select(cfg, "env.name")
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            defaults = compose(config_name="config", overrides=[f"algo={algo}", f"env={env}"])
    except (HydraException, OmegaConfBaseException) as e:
        first = str(e).strip().splitlines()[0]
        raise ConfigError(
            f"resume=true: {saved} names algo={algo} env={env}, which no longer exist ({first})"
        ) from None
    have = config_schema.leaves(OmegaConf.to_container(cfg, resolve=False))
    known = config_schema.leaves(OmegaConf.to_container(defaults, resolve=False))
    added = {k: VALUE_BEFORE_ADDED.get(k, v) for k, v in known.items() if k not in have}
    for key, value in added.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    if added:
        listed = ", ".join(f"{k}={v}" for k, v in added.items())
        print(
            f"jlmarl: {saved} predates these settings; resuming with their defaults: {listed}",
            file=sys.stderr,
        )


def _resumable(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS)


def _same_value(old, new) -> bool:
    """Saved and command-line values are equal (0 == 0.0, lists by items)."""
    if isinstance(old, (DictConfig, ListConfig)):
        old = OmegaConf.to_container(old, resolve=True)
    if isinstance(old, bool) or isinstance(new, bool):
        return type(old) is type(new) and old == new
    return old == new


def _changes_text(changes: list[tuple[str, object, object]]) -> str:
    """One line naming every frozen key a resume would change, with both values."""
    keys = ", ".join(k for k, _, _ in changes)
    old = ", ".join(f"{k}={v}" for k, v, _ in changes)
    new = ", ".join(f"{k}={v}" for k, _, v in changes)
    return (
        f"{keys} cannot change when resuming (the run has {old}; this command {new}); only "
        f"{', '.join(k.rstrip('.') for k in RESUMABLE_KEYS)} can; start a new run_dir to change "
        f"{'it' if len(changes) == 1 else 'them'}"
    )


def frozen_differences(saved: DictConfig, cfg: DictConfig) -> list[str]:
    """The keys (outside RESUMABLE_KEYS) whose values differ between two run configs,
    as 'key=<saved> (now <cfg>)': what tells another run from this one."""

    a = config_schema.leaves(OmegaConf.to_container(saved, resolve=True))
    b = config_schema.leaves(OmegaConf.to_container(cfg, resolve=True))
    return [
        f"{k}={a.get(k, _UNSET)} (now {b.get(k, _UNSET)})"
        for k in sorted(a.keys() | b.keys())
        if not _resumable(k) and not _same_value(a.get(k, _UNSET), b.get(k, _UNSET))
    ]


def _parse_value(value: str):
    """A command-line value as Hydra would type it (int, float, bool, null, list, str)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(f"x={value}")
    return parsed.value()


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg: DictConfig) -> None:
    """Every declared key's type and range (configs/*.yaml, see jlmarl.config_schema),
    then the checks that relate keys to each other; one sentence per error."""
    try:
        algos.check_name(cfg.algo.name)
        envs.check_name(cfg.env.name)
        config_schema.check(OmegaConf.to_container(cfg, resolve=True))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _check(
        cfg.batch_size <= cfg.buffer_size,
        f"batch_size={cfg.batch_size} exceeds buffer_size={cfg.buffer_size}; "
        "lower batch_size or raise buffer_size",
    )
    _check(
        cfg.num_envs <= cfg.buffer_size,
        f"num_envs={cfg.num_envs} exceeds buffer_size={cfg.buffer_size}; "
        "one chunk's episodes must fit the buffer: raise buffer_size",
    )
    d = cfg.distributed
    if d.enabled:
        _check(
            isinstance(d.coordinator_address, str) and ":" in d.coordinator_address,
            f"distributed.coordinator_address must be host:port of process 0, got {d.coordinator_address!r}",
        )
        _check(
            d.process_id < d.num_processes,
            f"distributed.process_id must be in [0, {d.num_processes}), got {d.process_id!r}",
        )
    try:
        algos.check_config(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
