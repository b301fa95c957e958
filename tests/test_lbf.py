"""Level-Based Foraging (jlmarl/envs/lbf.py) against hand-computed scenes and against the real
`lbforaging` package: the same start state loaded into both, the same actions, the same
observations, available actions, rewards and ends (conformance: tests/test_envs.py)."""

from __future__ import annotations

import functools

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from lbforaging.foraging.environment import Action

import jlmarl.envs as envs
from jlmarl.envs import lbf
from jlmarl.pyenvs.adapters import LBForaging

NONE, N, S, W, E, LOAD = range(6)
N_EPISODES = 4  # replayed per task
KEY = jax.random.key(0)  # the env's dynamics are deterministic: every step may take this key


def gym_id(task: str) -> str:
    size, players, food, sight, coop = lbf.TASKS[task]
    return f"Foraging{'-2s' if sight else ''}-{size}x{size}-{players}p-{food}f{'-coop' if coop else ''}-v3"


def reference(task: str):
    """lbforaging's ForagingEnv for a task, built from its registered id (the host twin's for
    the ids lbforaging lacks)."""
    base, overrides = lbf.HOST_TWINS.get(gym_id(task), (gym_id(task), {}))
    ref = gymnasium.make(base, disable_env_checker=True, **overrides).unwrapped
    ref.reset(seed=0)
    return ref


def load_into(ref, s: lbf.LBFState) -> None:
    """Sets lbforaging's env to our state (players, field, reward normaliser, step count)."""
    for player, pos, level in zip(
        ref.players, np.asarray(s.agent_pos), np.asarray(s.agent_level), strict=True
    ):
        player.setup((int(pos[0]), int(pos[1])), int(level), ref.field_size)
        player.reward = 0
    ref.field = np.zeros(ref.field_size, np.int32)
    for pos, level in zip(np.asarray(s.food_pos), np.asarray(s.food_level), strict=True):
        if level > 0:
            ref.field[pos[0], pos[1]] = level
    ref._food_spawned = float(s.food_spawned)
    ref.current_step, ref._game_over = int(s.t), False
    ref._gen_valid_moves()


def ref_avail(ref) -> np.ndarray:
    return np.array([[a in ref._valid_actions[p] for a in Action] for p in ref.players])


def ref_step(ref, actions) -> tuple[np.ndarray, float, bool, bool]:
    """(obs, team reward, terminated, truncated) as the host adapter reads lbforaging."""
    obs, rewards, done, _, _ = ref.step([int(a) for a in actions])
    cleared = ref.field.sum() == 0
    return np.stack(obs), float(np.sum(rewards)), bool(done and cleared), bool(done and not cleared)


def scene(env, agents, food, t=0) -> lbf.LBFState:
    """agents / food: [((row, col), level), ...]; absent food slots stay empty."""
    food = list(food) + [((0, 0), 0)] * (env.n_food - len(food))
    return lbf.LBFState(
        agent_pos=jnp.array([p for p, _ in agents], jnp.int32),
        agent_level=jnp.array([lv for _, lv in agents], jnp.int32),
        food_pos=jnp.array([p for p, _ in food], jnp.int32),
        food_level=jnp.array([lv for _, lv in food], jnp.int32),
        food_spawned=jnp.float32(sum(lv for _, lv in food)),
        t=jnp.int32(t),
    )


FAST_COMPILE = {  # each program runs a few dozen times: XLA's optimisation would cost more than it saves
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}


def fast_jit(fn):
    """jax.jit with FAST_COMPILE, compiled on the first call for each argument shape."""
    cache = {}

    def call(*args):
        leaves, tree = jax.tree.flatten(args)
        key = (tree, tuple((np.shape(x), str(x.dtype)) for x in leaves))
        if key not in cache:
            lowered = jax.jit(fn).lower(*args)
            try:
                cache[key] = lowered.compile(compiler_options=FAST_COMPILE)
            except jax.errors.JaxRuntimeError:  # an XLA that lacks one of these options
                cache[key] = lowered.compile()
        return cache[key](*args)

    return call


@functools.cache
def jitted(name: str):
    """(env, step, batched reset, batched step, observe, avail), each compiled once per session."""
    env = envs.make(name)
    batched = fast_jit(jax.vmap(env.reset)), fast_jit(jax.vmap(env.step))
    return env, fast_jit(env.step), *batched, fast_jit(env.observe), fast_jit(env.avail)


def step_both(name, ref, s, actions):
    """One step of ours and of lbforaging from the same state; asserts they agree."""
    _, step, _, _, _, avail = jitted(name)
    load_into(ref, s)
    np.testing.assert_array_equal(avail(s), ref_avail(ref))
    s, ts = step(KEY, s, jnp.array(actions, jnp.int32))
    obs, reward, terminated, truncated = ref_step(ref, actions)
    np.testing.assert_array_equal(np.asarray(ts.obs), obs)
    np.testing.assert_allclose(float(ts.reward), reward, rtol=1e-6, atol=1e-7)
    assert (bool(ts.terminated), bool(ts.truncated)) == (terminated, truncated)
    np.testing.assert_array_equal(np.asarray(ts.avail), ref_avail(ref))
    return s, ts


def test_specs():
    for task, (n, obs_dim) in {
        "10x10_3p_5f": (3, 3 * (5 + 3)),
        "10x10_4p_3f": (4, 3 * (3 + 4)),
        "2s_8x8_2p_2f_coop": (2, 3 * (2 + 2)),
        "2s_10x10_3p_3f": (3, 3 * (3 + 3)),
    }.items():
        spec = envs.make(f"lbf_{task}").spec
        assert (spec.n_agents, spec.obs_dim, spec.state_dim) == (n, obs_dim, n * obs_dim)
        assert (spec.n_actions, spec.episode_limit, spec.info_keys) == (6, 50, ("won",))
        ref = reference(task)  # lbforaging's registered task has the same sizes and rules
        assert ref.observation_space[0].shape == (obs_dim,) and len(ref.players) == n
        env = envs.make(f"lbf_{task}")
        assert (ref.sight, ref.force_coop, ref.max_num_food) == (env.sight, env.force_coop, env.n_food)


def test_host_twins_have_the_tasks_shapes():
    for gym, (base, overrides) in lbf.HOST_TWINS.items():
        info = LBForaging(base, **overrides).get_env_info()
        task = next(t for t in lbf.TASKS if gym_id(t) == gym)
        spec = envs.make(f"lbf_{task}").spec
        assert (info["n_agents"], info["obs_shape"], info["n_actions"]) == (
            spec.n_agents,
            spec.obs_dim,
            spec.n_actions,
        )
        assert info["state_shape"] == spec.state_dim and info["episode_limit"] == spec.episode_limit
        envs.check_name(f"lbforaging_{gym}")


def test_cooperative_load_by_hand_and_by_lbforaging():
    name = "lbf_2s_8x8_2p_2f_coop"
    env, avail, ref = jitted(name)[0], jitted(name)[5], reference("2s_8x8_2p_2f_coop")
    # levels 1 and 2 on both sides of a level-3 food; another food (level 2) far away: 5 spawned
    s = scene(env, [((3, 2), 1), ((3, 4), 2)], [((3, 3), 3), ((6, 6), 2)])
    np.testing.assert_array_equal(avail(s), [[1, 1, 1, 1, 0, 1], [1, 1, 1, 0, 1, 1]])
    s, ts = step_both(name, ref, s, [LOAD, NONE])  # level 1 alone: fails
    assert float(ts.reward) == 0.0 and int(s.food_level[0]) == 3
    s, ts = step_both(name, ref, s, [LOAD, LOAD])  # 1 + 2 >= 3: 1*3/(3*5) + 2*3/(3*5) = 3/5
    assert float(ts.reward) == pytest.approx(0.6) and int(s.food_level[0]) == 0
    assert not bool(ts.terminated) and float(ts.info["won"]) == 0.0
    assert not bool(avail(s)[0, LOAD])  # the food is gone
    # the last food, loaded at the final step: a win (terminated), not a truncation
    s = scene(env, [((5, 6), 2), ((6, 5), 1)], [((6, 6), 3)], t=49).replace(food_spawned=jnp.float32(5.0))
    s, ts = step_both(name, ref, s, [LOAD, LOAD])
    assert float(ts.reward) == pytest.approx(0.6)
    assert bool(ts.terminated) and not bool(ts.truncated) and float(ts.info["won"]) == 1.0
    # nothing loaded at the final step: truncated
    s = scene(env, [((5, 6), 2), ((1, 1), 1)], [((6, 6), 3)], t=49)
    s, ts = step_both(name, ref, s, [LOAD, NONE])
    assert float(ts.reward) == 0.0 and bool(ts.truncated) and not bool(ts.terminated)


def test_moves_resolve_by_target_cell_by_hand_and_by_lbforaging():
    name = "lbf_10x10_4p_3f"
    env, ref = jitted(name)[0], reference("10x10_4p_3f")
    food = [((8, 2), 1), ((2, 8), 2)]
    # 0 and 1 target (0, 1): both stay; 2 and 3 swap places
    s = scene(env, [((0, 0), 1), ((0, 2), 1), ((5, 5), 2), ((5, 6), 1)], food)
    s, _ = step_both(name, ref, s, [E, W, E, W])
    np.testing.assert_array_equal(s.agent_pos, [[0, 0], [0, 2], [5, 6], [5, 5]])
    # 1 and 2 target (6, 6) and stay; 3 enters 2's cell anyway: two agents on (5, 6)
    s = scene(env, [((0, 0), 1), ((7, 6), 1), ((5, 6), 2), ((5, 5), 1)], food)
    s, ts = step_both(name, ref, s, [NONE, N, S, E])
    np.testing.assert_array_equal(s.agent_pos, [[0, 0], [7, 6], [5, 6], [5, 6]])
    # full sight: absolute coordinates; food row-major, then myself, then the others by index
    np.testing.assert_array_equal(
        ts.obs[3], [2, 8, 2, 8, 2, 1, -1, -1, 0, 5, 6, 1, 0, 0, 1, 7, 6, 1, 5, 6, 2]
    )
    # unavailable actions (off the grid, onto food) are no-ops; a follower takes a vacated cell
    s = scene(env, [((0, 0), 1), ((7, 2), 1), ((3, 3), 1), ((3, 4), 1)], food)
    s, _ = step_both(name, ref, s, [N, S, E, E])
    np.testing.assert_array_equal(s.agent_pos, [[0, 0], [7, 2], [3, 4], [3, 5]])


def test_sight_two_observation_by_hand_and_by_lbforaging():
    name = "lbf_2s_8x8_2p_2f_coop"
    env, observe, ref = jitted(name)[0], jitted(name)[4], reference("2s_8x8_2p_2f_coop")
    s = scene(env, [((0, 0), 1), ((4, 4), 2)], [((2, 2), 3), ((3, 5), 3)])
    # agent 0's window is clipped at the corner, so it sees agent 1 four cells away (lbforaging's
    # quirk) but not the food at (3, 5); agent 1's window starts at (2, 2)
    expected = [[2, 2, 3, -1, -1, 0, 0, 0, 1, 4, 4, 2], [0, 0, 3, 1, 3, 3, 2, 2, 2, -1, -1, 0]]
    np.testing.assert_array_equal(observe(s), expected)
    load_into(ref, s)
    np.testing.assert_array_equal(np.stack(ref._make_gym_obs()), expected)
    # nobody moves: the state is the same observations, concatenated and divided by the size 8
    _, ts = jitted(name)[1](KEY, s, jnp.array([NONE, NONE], jnp.int32))
    np.testing.assert_array_equal(ts.state, np.array(expected, np.float32).reshape(-1) / 8)
    _, ts = jitted(name)[2](jax.random.split(jax.random.key(0), N_EPISODES))
    np.testing.assert_array_equal(ts.state, ts.obs.reshape(N_EPISODES, -1) / 8)
    raw = envs.make(name, normalize_state=False)
    _, ts = raw.reset(jax.random.key(0))
    np.testing.assert_array_equal(ts.state, ts.obs.reshape(-1))


def _policy(rng, avail: np.ndarray) -> np.ndarray:
    """Loads when it can (70%), else a random available action; 10% of actions are uniform,
    available or not (lbforaging turns those into none)."""
    out = np.empty(avail.shape[0], np.int32)
    for i, av in enumerate(avail):
        if rng.random() < 0.1:
            out[i] = rng.integers(6)
        elif av[LOAD] and rng.random() < 0.7:
            out[i] = LOAD
        else:
            out[i] = rng.choice(np.flatnonzero(av))
    return out


def replay(task, s, refs, rng) -> None:
    """Steps ours (batched state s) and each lbforaging env in refs, already in the same
    states, with the same actions until every episode ends; asserts they agree at every step."""
    env, _, _, step, _, _ = jitted(f"lbf_{task}")
    keys = jax.random.split(KEY, len(refs))
    live, rewarded = np.ones(len(refs), bool), 0
    current = np.stack([ref_avail(r) for r in refs])  # [episodes, n, 6]
    for t in range(env.spec.episode_limit):
        actions = np.stack([_policy(rng, a) for a in current])
        s, ts = step(keys, s, jnp.asarray(actions))
        out = jax.device_get(ts)
        for i in np.flatnonzero(live):
            obs, reward, terminated, truncated = ref_step(refs[i], actions[i])
            where = f"{task} episode {i} step {t + 1}"
            np.testing.assert_array_equal(out.obs[i], obs, err_msg=where)
            np.testing.assert_array_equal(out.avail[i], ref_avail(refs[i]), err_msg=where)
            np.testing.assert_allclose(out.reward[i], reward, rtol=1e-6, atol=1e-7, err_msg=where)
            assert (out.terminated[i], out.truncated[i]) == (terminated, truncated), where
            assert out.info["won"][i] == float(terminated)
            rewarded += reward > 0
            live[i] = not (terminated or truncated)
        current = out.avail
        if not live.any():
            break
    assert not live.any() and rewarded > 0


@pytest.mark.parametrize("task", list(lbf.TASKS))
def test_replayed_episodes_match_lbforaging(task):
    """Our resets loaded into lbforaging; both step the same actions until the episode ends."""
    env, _, reset, _, _, _ = jitted(f"lbf_{task}")
    refs = [reference(task) for _ in range(N_EPISODES)]
    s, ts = reset(jax.random.split(jax.random.key(7), N_EPISODES))
    first = jax.device_get(s)
    for i, ref in enumerate(refs):
        load_into(ref, jax.tree.map(lambda x, i=i: x[i], first))
        np.testing.assert_array_equal(ts.obs[i], np.stack(ref._make_gym_obs()))
        np.testing.assert_array_equal(ts.avail[i], ref_avail(ref))
    if env.force_coop:  # each food's level: the sum of the (at most 3) agents' levels
        np.testing.assert_array_equal(
            first.food_level.T, np.broadcast_to(first.agent_level.sum(1), (env.n_food, N_EPISODES))
        )
    replay(task, s, refs, np.random.default_rng(0))


def test_lbforaging_resets_replay_in_ours():
    """The other way round: lbforaging's own seeded resets, read into our state."""
    task = "2s_10x10_3p_3f"
    env = jitted(f"lbf_{task}")[0]
    refs, states = [reference(task) for _ in range(N_EPISODES)], []
    for seed, ref in enumerate(refs):
        for p in ref.players:  # forget the last episode's positions, as the host adapter does
            p.position = None
        ref.reset(seed=100 + seed)
        rows, cols = np.nonzero(ref.field)
        food = [((r, c), ref.field[r, c]) for r, c in zip(rows, cols, strict=True)]
        state = scene(env, [(p.position, p.level) for p in ref.players], food)
        states.append(state.replace(food_spawned=jnp.float32(ref._food_spawned)))
    s = jax.tree.map(lambda *x: jnp.stack(x), *states)
    np.testing.assert_array_equal(jitted(f"lbf_{task}")[4](states[0]), np.stack(refs[0]._make_gym_obs()))
    replay(task, s, refs, np.random.default_rng(1))


def test_reset_draws_like_lbforaging():
    """The same distribution of start states as lbforaging's generator (frequencies within
    sampling noise), and its hard rules on every draw."""
    task, n = "2s_10x10_3p_3f", 500
    env = envs.make(f"lbf_{task}")
    states = jax.device_get(jitted(f"lbf_{task}")[2](jax.random.split(jax.random.key(1), n))[0])
    ref = reference(task)
    ref_levels, ref_food, ref_rows = [], [], []
    for seed in range(n):
        for p in ref.players:
            p.position = None
        ref.reset(seed=seed)
        ref_levels.append([p.level for p in ref.players])
        rows, cols = np.nonzero(ref.field)
        ref_food.append(ref.field[rows, cols])
        ref_rows.append(rows)
    size = env.size
    for i in range(n):
        pos, fpos, flevel = states.agent_pos[i], states.food_pos[i], states.food_level[i]
        assert len({tuple(p) for p in pos}) == env.n  # distinct cells
        assert (flevel > 0).all() and ((fpos >= 1) & (fpos <= size - 2)).all()
        d = np.abs(fpos[:, None] - fpos[None]).max(-1) + np.eye(len(fpos), dtype=int) * 9
        assert (d >= 2).all()
        assert not any((p == f).all() for p in pos for f in fpos)

    def freq(values, bins):
        values = np.concatenate([np.ravel(v) for v in values])
        return np.bincount(values, minlength=bins)[:bins] / len(values)

    for ours, theirs, bins in (
        (states.agent_level, ref_levels, 3),
        (states.food_level, ref_food, 7),
        (states.food_pos[..., 0], ref_rows, size),
    ):
        np.testing.assert_allclose(freq(ours, bins), freq(theirs, bins), atol=0.04)
