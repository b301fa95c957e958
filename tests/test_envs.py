"""Env conformance for every registered name, plus matrix- and SMAX-specific checks.

Compiles dominate the run time (a SMAX step is seconds of tracing and XLA), so
each env gets exactly one jitted function, a vmapped AutoReset reset and a
`lax.scan` of random-action AutoReset steps, whose cached result every
conformance test reads; the next env's compiles in the background meanwhile.
XLA's CPU optimisation is turned down for these compiles: each program runs
once, for a few hundred steps.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from flax import struct

import jlmarl.envs as envs
from jlmarl.envs import AutoReset, UnknownEnvError, host, matrix, random_actions, smax

ROOT = Path(__file__).resolve().parents[1]
N_ENVS = 4
FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}
# Host envs (Python envs in worker processes) are not pure functions: tests/test_host.py.
NAMES = [n for n in envs.names() if n not in host.HOST_NAMES]
# Every SMAX map is the same adapter over another scenario; rollouts of this sample cover
# each path (jaxmarl scenarios, mixed unit types, our fixed maps, drawn race types,
# jaxmarl's smacv2 maps). JLMARL_TEST_ALL_MAPS=1 rolls out every map.
SMAX_SAMPLE = ["smax_3m", "smax_2s3z", "smax_corridor", "smax_protoss_5v5", "smax_smacv2_5_units"]
ALL_SMAX_NAMES = [n for n in NAMES if n.startswith("smax_")]
SMAX_NAMES = ALL_SMAX_NAMES if os.environ.get("JLMARL_TEST_ALL_MAPS") == "1" else SMAX_SAMPLE
# MuJoCo physics compiles for minutes on a CPU: tests/test_mamujoco.py rolls out one robot.
ROLLOUT_NAMES = [n for n in NAMES if not n.startswith(("smax_", "mamujoco_"))] + SMAX_NAMES


def _compile(lowered):
    try:
        return lowered.compile(compiler_options=FAST_COMPILE)
    except jax.errors.JaxRuntimeError:  # an XLA that lacks one of these options
        return lowered.compile()


def _rollout_steps(limit: int) -> int:
    """Past the first episode's limit, so that at least one reset happens."""
    return limit + min(limit, 10)


@struct.dataclass
class _Tracked:
    inner: Any
    first: Any  # the Timestep of the reset that started the episode
    t: jax.Array  # steps since that reset


class _Tracker:
    """Keeps, in the env state, the reset's Timestep and the steps taken since, so that the
    test can tell that AutoReset's obs/state/avail and carried state come from one fresh reset."""

    def __init__(self, env):
        self.env, self.spec = env, env.spec

    def reset(self, key):
        inner, ts = self.env.reset(key)
        return _Tracked(inner, ts, jnp.int32(0)), ts

    def step(self, key, s, actions):
        inner, ts = self.env.step(key, s.inner, actions)
        return _Tracked(inner, s.first, s.t + 1), ts


def _rollout_kwargs(name: str) -> dict:
    """Big SMAX maps step slowly: a shorter time limit keeps their rollouts short."""
    if name.startswith("smax_"):
        if envs.make(name).world.num_agents > 20:  # the SMAX engine's num_agents: every unit
            return {"max_steps": 30}
    return {}


def _rollout(name: str):
    """(env, outputs as numpy): N_ENVS AutoReset streams of random available actions."""
    env = envs.make(name, **_rollout_kwargs(name))
    auto = AutoReset(_Tracker(env))
    n_steps = _rollout_steps(env.spec.episode_limit)

    def one(key):
        reset_key, steps_key = jax.random.split(key)
        state0, ts0 = auto.reset(reset_key)

        def body(carry, key):
            state, avail = carry
            act_key, step_key = jax.random.split(key)
            state, ts = auto.step(step_key, state, random_actions(act_key, avail))
            tracked = state.env_state
            from_reset = jnp.stack(
                [
                    jnp.array_equal(getattr(ts, f), getattr(tracked.first, f))
                    for f in ("obs", "state", "avail")
                ]
            )
            return (state, ts.avail), dict(ts=ts, t=tracked.t, from_reset=from_reset, env_state=tracked.inner)

        _, out = jax.lax.scan(body, (state0, ts0.avail), jax.random.split(steps_key, n_steps))
        return dict(ts0=ts0, state0=state0.env_state.inner, **out)

    keys = jax.random.split(jax.random.key(0), N_ENVS)
    compiled = _compile(jax.jit(jax.vmap(one)).lower(keys))
    return env, jax.device_get(compiled(keys))


# Compiling is mostly single-threaded and tracing holds the GIL only part of the time, so
# while one env's rollout compiles the next env's is traced and compiled on the other core.
_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=2)


@functools.cache
def _submitted(name: str) -> concurrent.futures.Future:
    return _EXECUTOR.submit(_rollout, name)


def rollout(name: str):
    """`_rollout(name)`, once per session, starting the next name's in the background."""
    future = _submitted(name)
    if name in ROLLOUT_NAMES[:-1]:
        _submitted(ROLLOUT_NAMES[ROLLOUT_NAMES.index(name) + 1])
    return future.result()


def _check_timestep(spec, ts, batch):
    n, a = spec.n_agents, spec.n_actions
    expected = {
        "obs": ((n, spec.obs_dim), np.float32),
        "state": ((spec.state_dim,), np.float32),
        "avail": ((n, a), np.bool_),
        "reward": ((), np.float32),
        "terminated": ((), np.bool_),
        "truncated": ((), np.bool_),
    }
    for field, (shape, dtype) in expected.items():
        value = getattr(ts, field)
        assert value.shape == batch + shape, (field, value.shape)
        assert value.dtype == dtype, (field, value.dtype)
    assert tuple(ts.info) == spec.info_keys
    for key, value in ts.info.items():
        assert value.shape == batch, (key, value.shape)
        assert value.dtype in (np.float32, np.bool_), (key, value.dtype)
    assert np.all(np.isfinite(ts.obs)) and np.all(np.isfinite(ts.state)) and np.all(np.isfinite(ts.reward))


def _episode_lengths(done):
    """Steps since the last reset, counting the current one, per [batch, time] step."""
    length = np.zeros(done.shape, np.int64)
    count = np.zeros(done.shape[0], np.int64)
    for t in range(done.shape[1]):
        count += 1
        length[:, t] = count
        count[done[:, t]] = 0
    return length


# --- every env ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_spec(name):
    spec = envs.make(name).spec
    assert spec.name == name
    assert isinstance(spec.info_keys, tuple) and all(isinstance(k, str) for k in spec.info_keys)
    hash(spec)  # a jit static


@pytest.mark.parametrize("name", ROLLOUT_NAMES)
def test_timestep_shapes_and_dtypes(name):
    env, out = rollout(name)
    _check_timestep(env.spec, out["ts0"], (N_ENVS,))
    _check_timestep(env.spec, out["ts"], (N_ENVS, _rollout_steps(env.spec.episode_limit)))


@pytest.mark.parametrize("name", ROLLOUT_NAMES)
def test_every_agent_has_an_available_action(name):
    _, out = rollout(name)
    assert out["ts0"].avail.any(-1).all()
    assert out["ts"].avail.any(-1).all()


@pytest.mark.parametrize("name", ROLLOUT_NAMES)
def test_reset_is_not_done(name):
    _, out = rollout(name)
    assert not out["ts0"].terminated.any() and not out["ts0"].truncated.any()
    assert (out["ts0"].reward == 0).all()


@pytest.mark.parametrize("name", ROLLOUT_NAMES)
def test_episodes_end_within_the_limit(name):
    env, out = rollout(name)
    ts, limit = out["ts"], env.spec.episode_limit
    assert not (ts.terminated & ts.truncated).any(), "terminated and truncated together"
    length = _episode_lengths(ts.terminated | ts.truncated)
    assert length.max() <= limit, "an episode ran past episode_limit"
    # Truncation is the time limit, and nothing else ends an episode at the limit.
    assert (length[ts.truncated] == limit).all()
    at_limit = length == limit
    assert (ts.terminated | ts.truncated)[at_limit].all()


@pytest.mark.parametrize("name", ROLLOUT_NAMES)
def test_autoreset_restarts_and_keeps_the_final_step(name):
    _, out = rollout(name)
    ts, t, from_reset = out["ts"], out["t"], out["from_reset"]
    done = ts.terminated | ts.truncated
    assert done.any(), "the rollout should reach the end of an episode"
    # After a done step the carried state is a fresh reset's (its step count restarts) and the
    # Timestep's obs/state/avail are that reset's, while its done flags are the final step's.
    assert (t[done] == 0).all()
    assert from_reset[done].all(), "after done: obs/state/avail are not those of the new episode's reset"
    assert (t[~done] == _episode_lengths(done)[~done]).all()


# --- matrix games --------------------------------------------------------------------------------


def test_matrix_three_state_payoff_cycle_and_obs():
    env = envs.make("matrix_three_state")
    payoff = matrix.THREE_STATE_PAYOFF
    actions = [(0, 0), (1, 1), (2, 2), (0, 1), (1, 0), (2, 1), (1, 2), (0, 2), (2, 0), (1, 1)]
    state, ts = env.reset(jax.random.key(3))
    current = int(np.argmax(ts.state))
    for i, (a1, a2) in enumerate(actions):
        assert ts.obs.shape == (2, 1)
        assert (np.asarray(ts.obs) == float(current == 2)).all(), "obs is 1 only in S3"
        state, ts = env.step(jax.random.key(i), state, jnp.array([a1, a2], jnp.int32))
        assert float(ts.reward) == payoff[current, a1, a2]
        nxt = int(np.argmax(ts.state))
        assert nxt == (current + 1) % 3, "S1 -> S2 -> S3 -> S1"
        current = nxt
        last = i == len(actions) - 1
        assert bool(ts.truncated) == last and not bool(ts.terminated)
    assert len(actions) == env.spec.episode_limit == 10


def test_matrix_one_step_terminates_with_payoff():
    env = envs.make("matrix_one_step")
    state, ts = env.reset(jax.random.key(0))
    _, ts = env.step(jax.random.key(1), state, jnp.array([0, 0], jnp.int32))
    assert float(ts.reward) == 8.0 and bool(ts.terminated) and not bool(ts.truncated)
    _, ts = env.step(jax.random.key(1), state, jnp.array([0, 1], jnp.int32))
    assert float(ts.reward) == -12.0 and bool(ts.terminated)


def test_autoreset_keeps_final_reward_and_flags():
    auto = AutoReset(envs.make("matrix_one_step"))
    state, first = auto.reset(jax.random.key(0))
    for i in range(3):
        state, ts = auto.step(jax.random.key(i), state, jnp.array([0, 0], jnp.int32))
        assert float(ts.reward) == 8.0 and bool(ts.terminated) and not bool(ts.truncated)
        np.testing.assert_array_equal(ts.obs, first.obs)
        assert int(state.env_state.t) == 0


# --- registry ----------------------------------------------------------------------------------


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownEnvError) as err:
        envs.make("smax_no_such_map")
    assert "smax_3m" in str(err.value) and "matrix_one_step" in str(err.value)


def test_listing_names_does_not_import_jaxmarl():
    code = "import sys, jlmarl.envs as e; assert e.names(); assert 'jaxmarl' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_env_configs_construct():
    """configs/env/<name>.yaml: every key under env: but name is a constructor kwarg."""
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "configs/env").glob("*.yaml"))}
    ours = [n for n in NAMES if n.startswith(("smax_", "matrix_", "lbf_", "mamujoco_"))]
    assert set(ours) <= set(configs), "a SMAX, matrix, LBF or MuJoCo env without configs/env/<name>.yaml"
    for stem, cfg in configs.items():
        kwargs = dict(cfg["env"])
        assert kwargs.pop("name") == stem
        if stem in ours:
            assert envs.make(stem, **kwargs).spec.name == stem


# --- SMAX --------------------------------------------------------------------------------------


@pytest.mark.parametrize("map_name", sorted(smax.UNSUPPORTED))
def test_smax_unsupported_maps_point_to_smac(map_name):
    name = f"smax_{map_name}"
    assert name not in NAMES
    with pytest.raises(UnknownEnvError) as err:
        envs.make(name)
    message = str(err.value)
    assert f"smac_{map_name}" in message and smax.UNSUPPORTED[map_name] in message


def test_smax_maps_match_jaxmarl_and_leave_it_unchanged():
    envs.make("smax_corridor")  # imports jaxmarl; ours must not be added to its global table
    from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO

    assert set(MAP_NAME_TO_SCENARIO) == set(smax.JAXMARL_MAPS)
    assert set(ALL_SMAX_NAMES) == {f"smax_{m}" for m in smax.MAP_NAMES}


def test_smax_unknown_kwarg_is_a_type_error():
    with pytest.raises(TypeError, match="no_such_option"):
        envs.make("smax_3m", no_such_option=1)
    env = envs.make("smax_3m", see_enemy_actions=False, max_steps=7, reward_scale=1.0)
    assert env.spec.episode_limit == 7 and env.jaxmarl_env.see_enemy_actions is False


def test_smax_specs():
    for name, (n, obs, state, actions, limit) in {
        "smax_3m": (3, 13 * 5 + 10, 10 * 6, 8, 100),
        "smax_corridor": (6, 9 * 29 + 6, 6 * 30, 29, 200),  # per-map type bits: zealot, zergling
        "smax_2m_vs_1z": (2, 13 * 2 + 10, 10 * 3, 6, 100),
    }.items():
        spec = envs.make(name).spec
        assert (spec.n_agents, spec.obs_dim, spec.state_dim, spec.n_actions) == (n, obs, state, actions)
        assert spec.episode_limit == limit and spec.info_keys == ("won",)


def test_smax_state_is_normalised():
    _, out = rollout("smax_3m")
    states = np.concatenate([out["ts0"].state[:, None], out["ts"].state], axis=1).reshape(-1, 6, 10)
    assert np.abs(states[..., 1:3]).max() <= 1.0  # positions around the map centre
    assert states[..., 3].min() >= 0.0  # cooldowns
    np.testing.assert_array_equal(states[..., 4:].sum(-1), states[..., 0] > 0)  # one-hot type iff alive


def test_smax_corridor_units():
    _, out = rollout("smax_corridor")
    done = out["ts"].terminated | out["ts"].truncated
    zealot, zergling = 0, 1  # indices into the map's type list (zealot, zergling)
    for types in (out["state0"].state.unit_types, out["env_state"].state.unit_types[done]):
        assert (types[:, :6] == zealot).all() and (types[:, 6:] == zergling).all()


@pytest.mark.parametrize("map_name", ["protoss_5v5", "terran_5v5", "zerg_5v5"])
def test_smax_race_maps_draw_the_race_types(map_name):
    # The race pool's three types (indices 0-2 into it); frequencies: tests/test_smax_maps.py.
    env = envs.make(f"smax_{map_name}")
    n_allies = env.spec.n_agents
    states = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), 64))[0]
    types = np.asarray(states.state.unit_types)
    assert set(np.unique(types)) == {0, 1, 2}
    np.testing.assert_array_equal(types[:, :n_allies], types[:, n_allies:])  # enemies mirror allies


@pytest.mark.parametrize("name", SMAX_NAMES)
def test_smax_won_only_at_a_terminal_win(name):
    _, out = rollout(name)
    ts = out["ts"]
    won = ts.info["won"]
    assert set(np.unique(won)) <= {0.0, 1.0}
    assert (ts.terminated[won == 1]).all()
    assert (ts.reward[won == 1] >= 10.0).all()  # the won_battle_bonus, scaled


def test_smax_won_means_all_enemies_dead_and_an_ally_alive():
    env, out = rollout("smax_2m_vs_1z")  # its first states: allies and enemy far apart, all alive
    n = env.spec.n_agents
    health = out["state0"].state.unit_health.copy()
    cases = {  # health set to 0 before one step -> (won, terminated)
        "nobody dead": (slice(0, 0), 0.0, False),
        "enemies dead": (slice(n, None), 1.0, True),
        "both teams dead (a draw)": (slice(None), 0.0, True),
        "allies dead": (slice(0, n), 0.0, True),
    }
    assert len(cases) == N_ENVS
    for i, (dead, _, _) in enumerate(cases.values()):
        health[i, dead] = 0.0
    states = out["state0"].replace(state=out["state0"].state.replace(unit_health=health))
    keys = jax.random.split(jax.random.key(1), N_ENVS)
    actions = jnp.full((N_ENVS, n), 4, jnp.int32)  # stop
    step = _compile(jax.jit(jax.vmap(env.step)).lower(keys, states, actions))
    _, ts = step(keys, states, actions)
    for i, (case, (_, won, terminated)) in enumerate(cases.items()):
        assert float(ts.info["won"][i]) == won, case
        assert bool(ts.terminated[i]) == terminated and not bool(ts.truncated[i]), case
    assert float(ts.reward[1]) >= 10.0  # the win bonus, scaled
