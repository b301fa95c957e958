"""Python envs with the PyMARL/SMAC API, built inside host worker processes.

The API (what `jlmarl.pyenvs.worker` calls): `reset()`, `step(actions) ->
(reward, terminated, info)`, `get_obs()`, `get_state()`, `get_avail_actions()`,
`get_env_info()`, `close()`, and optionally `seed_episode(key)`, called before
each `reset()` with the episode's JAX key data (uint32[2]) so that an env can
seed itself from the engine's key stream. `info["episode_limit"]` marks an end by
time limit (truncation), `info["battle_won"]` a win (SMAC's conventions).

- `make_smac(map_name)`: oxwhirl's SMAC `StarCraft2Env` (real StarCraft II).
- `make_smacv2(race, n_units, n_enemies)`: SMACv2's capability wrapper with
  SMACv2's procedural teams (3 unit types per race, weights 0.45/0.45/0.1) and
  surrounded-or-reflected start positions.
- `LBForaging`: the `lbforaging` package (gymnasium API) as a PyMARL env.
- `NumpyMatrixThreeState`: NumPy twin of `jlmarl.envs.matrix.matrix_three_state`.

StarCraft II's packages are imported only here, inside the worker; the checks
`smac_missing`/`smacv2_missing` run in the parent without importing anything.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from jlmarl.pyenvs import threefry

SMAC_INSTALL = "pip install git+https://github.com/oxwhirl/smac.git (PyPI's `smac` is an unrelated package)"
SMACV2_INSTALL = "pip install git+https://github.com/oxwhirl/smacv2.git"
SC2_INSTALL = (
    "install StarCraft II 4.10 for Linux (SC2.4.10.zip from Blizzard's s2client-proto, "
    "password iagreetotheeula) to ~/StarCraftII or set SC2PATH to its folder, "
    "and copy the SMAC maps into StarCraftII/Maps/"
)


def _sc2_missing() -> str | None:
    path = Path(os.environ.get("SC2PATH", Path.home() / "StarCraftII"))
    if not (path / "Versions").is_dir():
        return f"StarCraft II was not found at {path} (SC2PATH): {SC2_INSTALL}"
    return None


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def smac_missing() -> str | None:
    """Why `smac_<map>` cannot run here (None when it can); imports nothing."""
    root = _package_dir("smac")
    if root is None:
        return f"needs oxwhirl's SMAC: {SMAC_INSTALL}; then {SC2_INSTALL}"
    if not (root / "env" / "starcraft2").is_dir():
        return f"the installed `smac` ({root}) is not oxwhirl's SMAC: pip uninstall smac, then {SMAC_INSTALL}"
    return _sc2_missing()


def smacv2_missing() -> str | None:
    """Why `smacv2_<race>_<n>v<m>` cannot run here (None when it can); imports nothing."""
    if _package_dir("smacv2") is None:
        return f"needs SMACv2: {SMACV2_INSTALL}; then {SC2_INSTALL} (with the SMACv2 maps)"
    return _sc2_missing()


def make_smac(map_name: str, **kwargs):
    from smac.env import StarCraft2Env

    return StarCraft2Env(map_name=map_name, **kwargs)


SMACV2_UNITS = {
    "protoss": ["stalker", "zealot", "colossus"],
    "terran": ["marine", "marauder", "medivac"],
    "zerg": ["zergling", "hydralisk", "baneling"],
}


def make_smacv2(race: str, n_units: int, n_enemies: int, **kwargs):
    from smacv2.env.starcraft2.wrapper import StarCraftCapabilityEnvWrapper

    capability_config = {
        "n_units": n_units,
        "n_enemies": n_enemies,
        "team_gen": {
            "dist_type": "weighted_teams",
            "unit_types": SMACV2_UNITS[race],
            "weights": [0.45, 0.45, 0.1],
            "observe": True,
        },
        "start_positions": {
            "dist_type": "surrounded_and_reflect",
            "p": 0.5,
            "n_enemies": n_enemies,
            "map_x": 32,
            "map_y": 32,
        },
    }
    return StarCraftCapabilityEnvWrapper(
        capability_config=capability_config, map_name=f"10gen_{race}", **kwargs
    )


class LBForaging:
    """lbforaging's gymnasium env as a PyMARL env.

    Observation: lbforaging's per-agent vector (food and agent (x, y, level)
    triplets within the agent's sight, -1 when unseen). State: every agent's
    observation concatenated (the full board when sight covers the field), divided by the
    grid size when `normalize_state` (as `jlmarl.envs.lbf`; epymarl gives it raw).
    Avail: lbforaging's valid actions (NONE, N, S, W, E, LOAD). Reward: the sum
    of the agents' rewards (the team reward). The episode terminates when every
    food is collected; reaching lbforaging's step limit is a truncation."""

    def __init__(self, gym_id: str, normalize_state: bool = True, **kwargs):
        import gymnasium
        import lbforaging  # noqa: F401  (registers the Foraging-* ids)

        if gym_id not in gymnasium.registry:
            raise ValueError(
                f"unknown lbforaging id {gym_id!r} (lbforaging registers Foraging-<size>x<size>-...)"
            )
        # gymnasium.make would take max_episode_steps for its own TimeLimit wrapper: set lbforaging's
        limit = kwargs.pop("max_episode_steps", None)
        self._env = gymnasium.make(gym_id, disable_env_checker=True, **kwargs).unwrapped
        if limit is not None:
            self._env._max_episode_steps = int(limit)
        self._actions = list(type(self._env.action_set[0]))
        self._state_scale = 1.0 / self._env.field_size[0] if normalize_state else 1.0
        self._seed: int | None = None
        self._obs = None

    def get_env_info(self) -> dict:
        n, obs_dim = self._env.n_agents, self._env.observation_space[0].shape[0]
        return {
            "n_agents": n,
            "obs_shape": obs_dim,
            "state_shape": n * obs_dim,
            "n_actions": len(self._actions),
            "episode_limit": int(self._env._max_episode_steps),
        }

    def seed_episode(self, key: np.ndarray) -> None:
        self._seed = (int(key[0]) << 32) | int(key[1])

    def reset(self) -> None:
        # lbforaging places players avoiding the previous episode's positions; forget them so that
        # an episode depends on its seed only (same key, same episode)
        for player in self._env.players:
            player.position = None
        self._obs, _ = self._env.reset(seed=self._seed)

    def step(self, actions) -> tuple[float, bool, dict]:
        self._obs, rewards, done, truncated, _ = self._env.step(actions)
        ended = bool(done or truncated)
        info = {"episode_limit": True} if ended and self._env.field.sum() > 0 else {}
        return float(np.sum(rewards)), ended, info

    def get_obs(self) -> list[np.ndarray]:
        return list(self._obs)

    def get_state(self) -> np.ndarray:
        return np.concatenate(self._obs) * np.float32(self._state_scale)

    def get_avail_actions(self) -> list[list[int]]:
        valid = self._env._valid_actions
        return [[int(a in valid[p]) for a in self._actions] for p in self._env.players]

    def close(self) -> None:
        self._env.close()


# Same numbers as jlmarl.envs.matrix.THREE_STATE_PAYOFF (kept here: workers do not import JAX).
THREE_STATE_PAYOFF = np.array(
    [
        [[4, 0, 0], [0, -2, 0], [0, 0, 0]],
        [[-1, 0, 0], [0, 1, 0], [0, 0, 0]],
        [[0, 0, 0], [0, -2, 0], [0, 0, 4]],
    ],
    dtype=np.float32,
)


class NumpyMatrixThreeState:
    """NumPy twin of `matrix_three_state`: same rules, and the start state drawn from
    the episode's JAX key exactly as the JAX env draws it (`randint(key, 0, 3)`,
    replayed by `jlmarl.pyenvs.threefry`), so the same seed gives the same episode."""

    def __init__(self, episode_limit: int = 10, threefry_partitionable: bool = True):
        self.episode_limit = episode_limit
        self.partitionable = threefry_partitionable
        self._key = np.zeros(2, np.uint32)
        self.state_idx, self.t = 0, 0

    def get_env_info(self) -> dict:
        return {
            "n_agents": 2,
            "obs_shape": 1,
            "state_shape": 3,
            "n_actions": 3,
            "episode_limit": self.episode_limit,
        }

    def seed_episode(self, key: np.ndarray) -> None:
        self._key = np.asarray(key, np.uint32)

    def reset(self) -> None:
        self.state_idx, self.t = threefry.randint(self._key, 0, 3, self.partitionable), 0

    def step(self, actions) -> tuple[float, bool, dict]:
        reward = float(THREE_STATE_PAYOFF[self.state_idx, actions[0], actions[1]])
        self.state_idx, self.t = (self.state_idx + 1) % 3, self.t + 1
        ended = self.t >= self.episode_limit
        return reward, ended, {"episode_limit": True} if ended else {}

    def get_obs(self) -> list[np.ndarray]:
        return [np.array([float(self.state_idx == 2)], np.float32)] * 2

    def get_state(self) -> np.ndarray:
        return np.eye(3, dtype=np.float32)[self.state_idx]

    def get_avail_actions(self) -> list[list[int]]:
        return [[1, 1, 1], [1, 1, 1]]

    def close(self) -> None:
        pass
