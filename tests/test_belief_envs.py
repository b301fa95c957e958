"""Belief-I2Q grid worlds: rules on hand-built situations, hidden-state declarations,
determinism and configs. Shape/dtype/time-limit/AutoReset conformance for these envs
runs in tests/test_envs.py, which covers every registered name."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from test_envs import _compile

import jlmarl.envs as envs
from jlmarl.envs import escape_room, gathering, honeycomb, oracle, random_actions

ROOT = Path(__file__).resolve().parents[1]
BELIEF_ENVS = ["oracle", "oracle_shared", "escape_room", "gathering", "honeycomb"]


class _Compiled:
    """jax.jit of fn, compiled on its first call with XLA's optimisation turned down (test_envs'
    `_compile`: these programs run a handful of times); later calls need the same shapes."""

    def __init__(self, fn):
        self.jitted, self.compiled = jax.jit(fn), None

    def __call__(self, *args):
        if self.compiled is None:
            self.compiled = _compile(self.jitted.lower(*args))
        return self.compiled(*args)


@functools.cache
def _jitted_step(env):
    return _Compiled(env.step)


def _step(env, state, actions):
    """One step of a hand-built state (one compile per env object)."""
    return _jitted_step(env)(jax.random.key(0), state, jnp.asarray(actions, jnp.int32))


@functools.cache
def _random_step(env):
    def step(key, s, avail):
        k_act, k_env = jax.random.split(key)
        return env.step(k_env, s, random_actions(k_act, avail))

    return _Compiled(step)


N_RESETS = 64


@functools.cache
def _jitted_resets(env):
    return _Compiled(jax.vmap(env.reset))


def _resets(env, key):
    """N_RESETS resets (one compile per env object)."""
    return _jitted_resets(env)(jax.random.split(key, N_RESETS))


@functools.cache
def _env(name: str):
    return envs.make(name)


# --- every belief env ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", BELIEF_ENVS)
def test_config_constructs_and_declares_hidden_dims(name):
    cfg = yaml.safe_load((ROOT / f"configs/env/{name}.yaml").read_text())["env"]
    assert cfg.pop("name") == name
    spec = envs.make(name, **cfg).spec
    assert spec.name == name and len(spec.hidden_dims) > 0
    assert len(set(spec.hidden_dims)) == len(spec.hidden_dims)


@pytest.mark.parametrize("name", BELIEF_ENVS)
def test_same_key_same_episode_and_keys_differ(name):
    env = _env(name)

    def episode(key):
        k_reset, k_steps = jax.random.split(key)
        s, ts = jax.tree.map(lambda x: x[0], _resets(env, k_reset))
        out = [ts]
        for t in range(6):
            s, ts = _random_step(env)(jax.random.fold_in(k_steps, t), s, ts.avail)
            out.append(ts)
        return jax.device_get(out)

    a, b = episode(jax.random.key(7)), episode(jax.random.key(7))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    c = episode(jax.random.key(8))
    assert not all(np.array_equal(x.obs, y.obs) for x, y in zip(a, c, strict=True))


# --- oracle --------------------------------------------------------------------------------------


def _oracle_state(pos, correct=0, visited=(False, False), t=0):
    return oracle.OracleState(
        pos=jnp.asarray(pos, jnp.int32),
        visited=jnp.asarray(visited, jnp.bool_),
        correct=jnp.int32(correct),
        t=jnp.int32(t),
        revealed=jnp.zeros((2,), jnp.bool_),
    )


def test_oracle_reveals_on_first_visit_and_only_for_that_step():
    env = _env("oracle")
    stay, plus_x, minus_x = 0, 1, 2
    s = _oracle_state([[16, 2], [10, 10]], correct=2)  # agent 0 at (0.8, 0.1), 0.1 from the oracle
    s, ts = _step(env, s, [plus_x, stay])  # (0.85, 0.1): within 0.1 of (0.9, 0.1)
    np.testing.assert_array_equal(ts.obs[0, 2:], [0, 0, 1])
    np.testing.assert_array_equal(ts.obs[1, 2:], [0, 0, 0])
    assert float(ts.reward) == pytest.approx(-0.01 + 0.1)
    assert bool(s.visited[0]) and not bool(s.visited[1])
    s, ts = _step(env, s, [stay, stay])  # still at the oracle: nothing more
    np.testing.assert_array_equal(ts.obs[:, 2:], 0)
    assert float(ts.reward) == pytest.approx(-0.01)
    for _ in range(3):
        s, ts = _step(env, s, [minus_x, stay])
    assert not bool(oracle._within(s.pos[0], jnp.asarray(oracle.ORACLE)))
    for _ in range(3):  # back to the oracle: a second visit reveals and pays nothing
        s, ts = _step(env, s, [plus_x, stay])
        np.testing.assert_array_equal(ts.obs[:, 2:], 0)
        assert float(ts.reward) == pytest.approx(-0.01)
    np.testing.assert_array_equal(ts.state[6:], [0, 0, 1])  # the state always holds the answer
    assert env.spec.hidden_dims == (6, 7, 8)


def test_oracle_first_visit_is_per_agent():
    env = _env("oracle")
    s = _oracle_state([[16, 2], [18, 4]], correct=1, visited=(False, True))
    _, ts = _step(env, s, [1, 0])  # both at the oracle; only agent 0's visit is new
    np.testing.assert_array_equal(ts.obs[:, 2:], [[0, 1, 0], [0, 0, 0]])
    assert float(ts.reward) == pytest.approx(-0.01 + 0.1)
    s = _oracle_state([[16, 2], [18, 4]], correct=0)
    _, ts = _step(env, s, [1, 0])  # both new: both see it, both paid
    np.testing.assert_array_equal(ts.obs[:, 2:], [[1, 0, 0], [1, 0, 0]])
    assert float(ts.reward) == pytest.approx(-0.01 + 0.2)
    assert float(ts.info["oracle_visited"]) == 1.0


def test_oracle_shared_answers_once_to_both_and_shows_both_positions():
    env = _env("oracle_shared")
    assert env.spec.obs_dim == 7 and env.spec.hidden_dims == (6, 7, 8)
    s = _oracle_state([[16, 2], [10, 12]], correct=2)
    s, ts = _step(env, s, [1, 0])  # agent 0 reaches the oracle: both are told, +0.1 once
    np.testing.assert_allclose(ts.obs[:, :4], [[0.85, 0.1, 0.5, 0.6], [0.5, 0.6, 0.85, 0.1]])
    np.testing.assert_array_equal(ts.obs[:, 4:], [[0, 0, 1], [0, 0, 1]])
    assert float(ts.reward) == pytest.approx(-0.01 + 0.1)
    s, ts = _step(env, s, [0, 0])  # shown for that step only
    np.testing.assert_array_equal(ts.obs[:, 4:], 0)
    s = s.replace(pos=jnp.asarray([[10, 10], [16, 2]], jnp.int32))
    _, ts = _step(env, s, [0, 1])  # agent 1's own first visit: the oracle has already answered
    np.testing.assert_array_equal(ts.obs[:, 4:], 0)
    assert float(ts.reward) == pytest.approx(-0.01)
    _, ts = _step(env, _oracle_state([[16, 2], [18, 4]], correct=1), [1, 0])  # both arrive: paid once
    np.testing.assert_array_equal(ts.obs[:, 4:], [[0, 1, 0], [0, 1, 0]])
    assert float(ts.reward) == pytest.approx(-0.01 + 0.1)


def test_oracle_reset_hides_the_box_and_draws_every_box():
    env = _env("oracle")
    _, ts = _resets(env, jax.random.key(0))
    np.testing.assert_array_equal(ts.obs, np.tile([0.5, 0.5, 0, 0, 0], (N_RESETS, 2, 1)))
    counts = np.asarray(ts.state[:, 6:]).sum(0)
    assert counts.sum() == N_RESETS and counts.min() >= 10  # ~21 each


def test_oracle_random_start_spreads_the_agents_and_keeps_the_box_draw():
    centre, spread = _env("oracle"), envs.make("oracle", random_start=True)
    key = jax.random.key(0)
    (_, ts_c), (s, ts_r) = (
        _resets(centre, key),
        jax.jit(jax.vmap(spread.reset))(jax.random.split(key, N_RESETS)),
    )
    np.testing.assert_array_equal(ts_r.state[:, 6:], ts_c.state[:, 6:])  # same key, same correct box
    pos = np.asarray(s.pos)
    assert pos.min() >= 0 and pos.max() <= 20 and len(np.unique(pos.reshape(-1, 2), axis=0)) > N_RESETS
    np.testing.assert_array_equal(ts_r.obs[..., 2:], 0)  # nothing revealed before a step
    assert not np.asarray(s.visited).any()


def test_oracle_correct_box_ends_the_episode_and_wrong_box_does_not():
    env = _env("oracle")
    up = 3  # +y
    s = _oracle_state([[2, 15], [10, 10]], correct=1)  # (0.1, 0.75) -> (0.1, 0.8): at box 2
    s2, ts = _step(env, s, [up, 0])
    assert not bool(ts.terminated) and float(ts.reward) == pytest.approx(-0.01)
    s = _oracle_state([[2, 15], [10, 10]], correct=2)
    _, ts = _step(env, s, [up, 0])
    assert bool(ts.terminated) and not bool(ts.truncated)
    assert float(ts.reward) == pytest.approx(-0.01 + 1.0) and float(ts.info["won"]) == 1.0
    # Correct box in the very last step: a terminal, not a truncation.
    s = _oracle_state([[2, 15], [10, 10]], correct=2, t=39)
    _, ts = _step(env, s, [up, 0])
    assert bool(ts.terminated) and not bool(ts.truncated)
    _, ts = _step(env, s2.replace(t=jnp.int32(39)), [0, 0])
    assert bool(ts.truncated) and not bool(ts.terminated) and float(ts.info["won"]) == 0.0


def test_oracle_moves_and_borders():
    env = _env("oracle")
    s = _oracle_state([[20, 20], [0, 0]])
    s, ts = _step(env, s, [5, 8])  # +x+y at the top-right corner, -x-y at the bottom-left
    np.testing.assert_array_equal(s.pos, [[20, 20], [0, 0]])
    s, ts = _step(env, s, [7, 6])  # -x+y, +x-y
    np.testing.assert_array_equal(s.pos, [[19, 20], [1, 0]])
    np.testing.assert_allclose(ts.obs[:, :2], [[0.95, 1.0], [0.05, 0.0]])
    np.testing.assert_allclose(ts.state[:4], [0.95, 1.0, 0.05, 0.0])


# --- escape_room ---------------------------------------------------------------------------------

STAY, UP, DOWN, LEFT, RIGHT = range(5)


def _escape_state(pos, keys=((1, 1), (2, 2)), collected=(False, False), exit=(9, 3), t=0):
    return escape_room.EscapeRoomState(
        pos=jnp.asarray(pos, jnp.int32),
        keys=jnp.asarray(keys, jnp.int32),
        collected=jnp.asarray(collected, jnp.bool_),
        exit=jnp.asarray(exit, jnp.int32),
        t=jnp.int32(t),
    )


def _escape_views(ts):
    """[agent, channel (wall, key, exit, other agent), 5, 5]"""
    return np.asarray(ts.obs[:, :100]).reshape(2, 4, 5, 5)


def test_escape_room_exit_needs_both_keys_first():
    env = _env("escape_room")
    s = _escape_state([[8, 3], [2, 4]])
    s, ts = _step(env, s, [DOWN, STAY])  # on the exit without keys: nothing happens
    assert not bool(ts.done) and float(ts.reward) == pytest.approx(-0.01)
    s, ts = _step(env, s, [STAY, LEFT])  # (2, 3): no key there
    np.testing.assert_array_equal(s.collected, [False, False])
    s, ts = _step(env, s, [STAY, LEFT])  # (2, 2): key 1
    np.testing.assert_array_equal(s.collected, [False, True])
    np.testing.assert_array_equal(ts.obs[:, 102:], [[0, 1], [0, 1]])  # the team inventory
    assert not bool(ts.done) and float(ts.info["keys_collected"]) == 0.5
    s, ts = _step(env, s, [STAY, UP])  # (1, 2)
    s, ts = _step(env, s, [STAY, LEFT])  # (1, 1): the second key while agent 0 waits on the exit
    assert bool(ts.terminated) and not bool(ts.truncated) and float(ts.info["won"]) == 1.0
    assert float(ts.reward) == pytest.approx(5.0 - 0.01)


def test_escape_room_keys_then_walking_onto_the_exit_wins():
    env = _env("escape_room")
    s = _escape_state([[8, 3], [5, 5]], collected=(True, True))
    _, ts = _step(env, s, [DOWN, RIGHT])
    assert bool(ts.terminated) and float(ts.reward) == pytest.approx(5.0 - 0.02)
    _, ts = _step(env, s.replace(t=jnp.int32(99)), [UP, STAY])  # last step, not on the exit
    assert bool(ts.truncated) and not bool(ts.terminated) and float(ts.info["won"]) == 0.0


def test_escape_room_wall_bump_and_move_costs():
    env = _env("escape_room")
    s = _escape_state([[0, 0], [5, 5]])
    s2, ts = _step(env, s, [UP, STAY])  # bump: stays, pays the move and the bump
    np.testing.assert_array_equal(s2.pos, [[0, 0], [5, 5]])
    assert float(ts.reward) == pytest.approx(-0.01 - 0.1)
    _, ts = _step(env, s, [LEFT, RIGHT])
    assert float(ts.reward) == pytest.approx(-0.02 - 0.1)
    _, ts = _step(env, s, [STAY, STAY])
    assert float(ts.reward) == 0.0


def test_escape_room_views_show_only_what_is_within_radius_2():
    env = _env("escape_room")
    s = _escape_state([[0, 0], [7, 4]], keys=((1, 2), (5, 5)), exit=(9, 3))
    _, ts = _step(env, s, [STAY, STAY])
    views = _escape_views(ts)
    walls = np.zeros((5, 5))
    walls[:2, :] = walls[:, :2] = 1  # agent 0 in the top-left corner
    np.testing.assert_array_equal(views[0, 0], walls)
    assert views[0, 1, 3, 4] == 1 and views[0, 1].sum() == 1  # key (1, 2) at offset (+1, +2)
    assert views[0, 2].sum() == 0 and views[0, 3].sum() == 0
    np.testing.assert_array_equal(views[1, 0].sum(), 0)  # (7, 4): no wall within 2
    assert views[1, 2, 4, 1] == 1 and views[1, 2].sum() == 1  # exit (9, 3) at offset (+2, -1)
    assert views[1, 1, 0, 3] == 1 and views[1, 1].sum() == 1  # key (5, 5) at offset (-2, +1)
    np.testing.assert_allclose(ts.obs[1, 100:102], [7 / 9, 4 / 9])
    # A collected key vanishes from the views; the other agent is seen when near.
    _, ts = _step(env, s.replace(collected=jnp.array([False, True])), [STAY, STAY])
    assert _escape_views(ts)[1, 1].sum() == 0
    _, ts = _step(env, _escape_state([[5, 5], [6, 4]]), [STAY, STAY])
    assert _escape_views(ts)[0, 3, 3, 1] == 1 and _escape_views(ts)[0, 3].sum() == 1
    np.testing.assert_allclose(ts.state[6:], np.array([1, 1, 2, 2, 9, 3]) / 9)  # hidden: keys, exit
    assert env.spec.hidden_dims == tuple(range(6, 12))


def test_escape_room_reset_places_keys_inside_and_exit_on_the_bottom_row():
    env = _env("escape_room")
    s, ts = _resets(env, jax.random.key(1))
    keys, exits = np.asarray(s.keys), np.asarray(s.exit)
    assert keys.min() >= 1 and keys.max() <= 8
    assert (keys[:, 0] != keys[:, 1]).any(-1).all(), "two keys on one cell"
    assert not (keys == [5, 5]).all(-1).any(), "a key on the start cell"
    assert (exits[:, 0] == 9).all() and len(np.unique(exits[:, 1])) == 10
    np.testing.assert_array_equal(s.pos, np.full((N_RESETS, 2, 2), 5))


# --- gathering -----------------------------------------------------------------------------------


def _gathering_state(pos, resources=((0, 10), (10, 0), (19, 19), (12, 12)), gathered=(False,) * 4, t=0):
    return gathering.GatheringState(
        pos=jnp.asarray(pos, jnp.int32),
        resources=jnp.asarray(resources, jnp.int32),
        gathered=jnp.asarray(gathered, jnp.bool_),
        t=jnp.int32(t),
    )


def test_gathering_collisions_block_and_are_penalised():
    env = _env("gathering")
    s = _gathering_state([[5, 5], [5, 7], [0, 0]])
    s2, ts = _step(env, s, [RIGHT, LEFT, STAY])  # both into (5, 6)
    np.testing.assert_array_equal(s2.pos, s.pos)
    assert float(ts.reward) == pytest.approx(2 * -0.01 + 2 * -0.05)
    s = _gathering_state([[5, 5], [5, 6], [0, 0]])
    s2, ts = _step(env, s, [RIGHT, STAY, UP])  # into a standing agent; agent 2 bumps a wall (free)
    np.testing.assert_array_equal(s2.pos, s.pos)
    assert float(ts.reward) == pytest.approx(2 * -0.01 - 0.05)
    s2, ts = _step(env, s, [RIGHT, LEFT, STAY])  # a swap is two collisions
    np.testing.assert_array_equal(s2.pos, s.pos)
    assert float(ts.reward) == pytest.approx(2 * -0.01 + 2 * -0.05)
    s2, ts = _step(env, s, [LEFT, RIGHT, DOWN])  # apart: no collision
    np.testing.assert_array_equal(s2.pos, [[5, 4], [5, 7], [1, 0]])
    assert float(ts.reward) == pytest.approx(3 * -0.01)


def test_gathering_resources_pay_once_and_all_gathered_ends():
    env = _env("gathering")
    s = _gathering_state([[0, 9], [10, 1], [5, 5]], gathered=(False, False, True, True))
    s, ts = _step(env, s, [RIGHT, STAY, STAY])
    assert float(ts.reward) == pytest.approx(3.0 - 0.01) and not bool(ts.done)
    assert float(ts.info["gathered"]) == 0.75
    s, ts = _step(env, s, [LEFT, STAY, STAY])  # off and back on: no second payment
    s, ts = _step(env, s, [RIGHT, STAY, STAY])
    assert float(ts.reward) == pytest.approx(-0.01)
    s, ts = _step(env, s, [STAY, LEFT, STAY])
    assert bool(ts.terminated) and not bool(ts.truncated) and float(ts.info["won"]) == 1.0
    assert float(ts.reward) == pytest.approx(3.0 - 0.01)


def test_gathering_each_agent_sees_every_agents_3x3_view_own_first():
    env = _env("gathering")
    s = _gathering_state([[0, 9], [10, 1], [11, 2]])
    _, ts = _step(env, s, [STAY, STAY, STAY])
    views = np.asarray(ts.obs).reshape(3, 3, 3, 3, 3)  # [agent, whose view, channel, 3, 3]
    for i in range(3):
        for k in range(3):
            np.testing.assert_array_equal(views[i, k], views[(i + k) % 3, 0])
    own = views[:, 0]
    np.testing.assert_array_equal(own[0, 0], [[1, 1, 1], [0, 0, 0], [0, 0, 0]])  # top wall
    assert own[0, 1, 1, 2] == 1 and own[0, 1].sum() == 1  # resource (0, 10) to the right
    assert own[1, 1, 1, 0] == 1 and own[1, 2, 2, 2] == 1  # resource (10, 0); agent 2 down-right
    assert own[2, 2, 0, 0] == 1 and own[2, 2].sum() == 1  # agent 1 up-left
    np.testing.assert_allclose(
        ts.state[:14], np.array([0, 9, 10, 1, 11, 2, 0, 10, 10, 0, 19, 19, 12, 12]) / 19
    )
    assert env.spec.hidden_dims == tuple(range(14))


def test_gathering_reset_puts_everything_on_distinct_cells():
    env = _env("gathering")
    s, _ = _resets(env, jax.random.key(2))
    cells = np.concatenate([s.pos, s.resources], axis=1)  # [N_RESETS, 7, 2]
    flat = cells[..., 0] * 20 + cells[..., 1]
    assert all(len(set(row)) == 7 for row in flat)
    assert cells.min() >= 0 and cells.max() <= 19


# --- honeycomb -----------------------------------------------------------------------------------

PASS, PX, MX, PY, MY, PXY, MXY = range(7)


def _honeycomb_state(pos, special=0, frozen=None, t=0):
    pos = jnp.asarray(pos, jnp.int32)
    frozen = jnp.zeros(pos.shape[:1], jnp.bool_) if frozen is None else jnp.asarray(frozen, jnp.bool_)
    return honeycomb.HoneycombState(pos=pos, frozen=frozen, special=jnp.int32(special), t=jnp.int32(t))


def test_honeycomb_agents_freeze_on_payoff_cells():
    env = _env("honeycomb")
    pos = np.zeros((10, 2), np.int32)
    pos[2] = (3, -2)  # next to payoff cell 1 (3, -3)
    s, ts = _step(env, _honeycomb_state(pos), [0, 0, MY] + [0] * 7)
    np.testing.assert_array_equal(s.pos[2], [3, -3])
    assert bool(s.frozen[2]) and int(s.frozen.sum()) == 1
    np.testing.assert_array_equal(ts.avail[2], [True] + [False] * 6)  # only pass
    assert ts.avail[0].all()
    s, ts = _step(env, s, [0, 0, PY] + [PX] * 7)  # a move by a frozen agent is ignored
    np.testing.assert_array_equal(s.pos[2], [3, -3])
    np.testing.assert_array_equal(s.pos[3:], np.tile([1, 0], (7, 1)))
    assert float(ts.reward) == 0.0 and not bool(ts.done)


def test_honeycomb_pays_at_the_end_one_per_payoff_cell_two_on_the_special():
    env = _env("honeycomb")
    pos = np.zeros((10, 2), np.int32)
    pos[0] = pos[4] = honeycomb.PAYOFF_CELLS[2]  # the special one
    pos[1] = honeycomb.PAYOFF_CELLS[0]
    frozen = np.zeros(10, bool)
    frozen[[0, 1, 4]] = True
    pos[5] = (5, 3)  # steps onto payoff cell 2 in the last step
    s = _honeycomb_state(pos, special=2, frozen=frozen, t=28)
    s, ts = _step(env, s, [0] * 10)
    assert float(ts.reward) == 0.0 and not bool(ts.done)
    _, ts = _step(env, s, [0] * 5 + [PX] + [0] * 4)
    assert bool(ts.terminated) and not bool(ts.truncated)
    assert float(ts.reward) == pytest.approx(2 + 1 + 2 + 2)
    assert float(ts.info["on_payoff"]) == pytest.approx(0.4)
    assert float(ts.info["on_special"]) == pytest.approx(0.3)
    # Every agent frozen ends the game early, with the same payout rule.
    everyone = np.tile(honeycomb.PAYOFF_CELLS[3], (10, 1))
    _, ts = _step(env, _honeycomb_state(everyone, special=3, frozen=np.ones(10, bool), t=3), [0] * 10)
    assert bool(ts.terminated) and float(ts.reward) == pytest.approx(20.0)


def test_honeycomb_only_informed_agents_see_the_special_cell():
    env = _env("honeycomb")
    s, ts = _resets(env, jax.random.key(3))
    special = np.asarray(s.special)
    assert len(np.unique(special)) == 6
    obs = np.asarray(ts.obs)
    onehot = np.eye(6)[special]
    np.testing.assert_array_equal(obs[:, :2, 4:10], np.repeat(onehot[:, None], 2, axis=1))
    np.testing.assert_array_equal(obs[:, 2:, 4:10], 0)
    np.testing.assert_array_equal(obs[:, :, 3], np.tile([1, 1] + [0] * 8, (N_RESETS, 1)))
    uninformed = obs[:, 2:]
    assert (uninformed == uninformed[:1]).all(), (
        "an uninformed agent's obs must not depend on the special cell"
    )
    np.testing.assert_array_equal(ts.state[:, 31:], onehot)
    assert env.spec.hidden_dims == tuple(range(31, 37))


def test_honeycomb_grid_border_and_config_checks():
    env = _env("honeycomb")
    pos = np.zeros((10, 2), np.int32)
    pos[0] = (6, 0)  # on the rim (distance 6)
    pos[1] = (-6, -6)
    _, ts = _step(env, _honeycomb_state(pos), [0] * 10)
    np.testing.assert_array_equal(ts.avail[0], [True, False, True, True, False, False, True])
    np.testing.assert_array_equal(ts.avail[1], [True, True, False, True, False, True, False])
    np.testing.assert_allclose(ts.obs[3, 10:14], [1, 0, -1, -1])  # everyone's cells / radius
    with pytest.raises(ValueError, match="radius"):
        envs.make("honeycomb", radius=5)
    with pytest.raises(ValueError, match="n_informed"):
        envs.make("honeycomb", n_agents=3, n_informed=4)
