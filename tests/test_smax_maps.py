"""SMAX maps on hand-built scenes: each test places units by hand and checks one rule
with numbers worked out by hand (distances, damage, heal amounts), not by the env."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jlmarl.envs as envs

STOP = 4  # SMAX's stop action


def _place(env_state, positions, alive):
    """env_state with units moved to `positions` [n_units, 2]; dead units get 0 health."""
    s = env_state.state
    alive = jnp.asarray(alive)
    return env_state.replace(
        state=s.replace(
            unit_positions=jnp.asarray(positions, jnp.float32),
            unit_alive=alive,
            unit_health=jnp.where(alive, s.unit_health, 0.0),
        )
    )


def test_ally_visibility_is_each_allys_sight_and_matches_its_obs():
    # smax_2s3z: allies 0-1 stalkers (sight 10), 2-4 zealots (sight 9); enemies 5-9.
    env = envs.make("smax_2s3z")
    env_state, ts0 = env.reset(jax.random.key(0))
    assert ts0.extras["ally_visibility"].shape == (5, 5) and ts0.extras["ally_visibility"].dtype == bool
    positions = [
        (10.0, 16.0),  # 0 stalker
        (12.0, 16.0),  # 1 stalker: 2 from ally 0
        (19.5, 16.0),  # 2 zealot: 9.5 from ally 0 (< 10, > 9: 0 sees 2, 2 does not see 0), 7.5 from 1
        (11.0, 17.0),  # 3 zealot, dead
        (10.0, 28.0),  # 4 zealot: 12 from 0, sqrt(4 + 144) = 12.2 from 1, sqrt(90.25 + 144) = 15.3 from 2
    ] + [(28.0, 2.0 + 2.0 * k) for k in range(5)]  # enemies far from every ally
    alive = [True, True, True, False, True] + [True] * 5
    env_state = _place(env_state, positions, alive)
    step = jax.jit(env.step)
    _, ts = step(jax.random.key(1), env_state, jnp.full((5,), STOP, jnp.int32))
    expected = np.array(
        [  # row i sees column j
            [1, 1, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [0, 1, 1, 0, 0],  # the zealot sees the stalker 7.5 away, not the one 9.5 away
            [0, 0, 0, 0, 0],  # dead: sees nothing, not even itself
            [0, 0, 0, 0, 1],
        ],
        bool,
    )
    np.testing.assert_array_equal(np.asarray(ts.extras["ally_visibility"]), expected)
    # The same pairs show in the obs: ally i's block for ally j (slot j, or j - 1 after i)
    # is non-zero exactly when i sees j.
    features = 13  # SMAX's per-unit features: health, dx, dy, move x/y, attack, cooldown, 6 type bits
    obs = np.asarray(ts.obs)
    for i in range(5):
        for j in range(5):
            if i != j:
                slot = j if j < i else j - 1
                shown = np.any(obs[i, slot * features : (slot + 1) * features] != 0)
                assert shown == expected[i, j], (i, j)
