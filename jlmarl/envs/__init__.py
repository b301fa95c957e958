"""Environments: the array contract (base), the registry, and every env we ship."""

# Importing a module registers its envs.
from jlmarl.envs import (  # noqa: F401
    digits,  # LIMARL's digit classification game
    escape_room,  # Belief-I2Q grid worlds: escape_room, gathering, honeycomb, oracle
    gathering,
    honeycomb,
    host,  # Python envs through host callbacks: SMAC, SMACv2, lbforaging, NumPy twin
    lbf,  # Level-Based Foraging in JAX (lbforaging's rules)
    mamujoco,  # multi-agent MuJoCo: brax robots on MJX, one agent per joint
    matrix,
    oracle,
    predator_prey,
    smax,
)
from jlmarl.envs.base import AutoReset, Env, EnvSpec, Timestep, make_timestep, random_actions
from jlmarl.envs.registry import UnknownEnvError, check_name, make, names

__all__ = [
    "AutoReset",
    "Env",
    "EnvSpec",
    "Timestep",
    "UnknownEnvError",
    "check_name",
    "make",
    "make_timestep",
    "names",
    "random_actions",
]
