"""Multi-agent MuJoCo (jlmarl/envs/mamujoco.py): Table 9's partitions, each agent's nearest
joints and observation, the action grid by hand, and the env contract on one robot (hopper,
one compile: MuJoCo physics compiles slowly on a CPU, so tests/test_envs.py skips these)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jlmarl.envs as envs
from jlmarl.envs import AutoReset, mamujoco, random_actions

FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}
TABLE_9 = {  # partition (agent order), nearest 2 joints of each agent (worked out on the joint graph)
    "hopper_3x1": {
        "thigh_joint": ["leg_joint", "foot_joint"],
        "leg_joint": ["thigh_joint", "foot_joint"],
        "foot_joint": ["leg_joint", "thigh_joint"],
    },
    "halfcheetah_6x1": {
        "bthigh": ["bshin", "fthigh"],
        "bshin": ["bthigh", "bfoot"],
        "bfoot": ["bshin", "bthigh"],
        "fthigh": ["fshin", "bthigh"],
        "fshin": ["fthigh", "ffoot"],
        "ffoot": ["fshin", "fthigh"],
    },
    "walker2d_6x1": {
        "foot_joint": ["leg_joint", "thigh_joint"],
        "leg_joint": ["foot_joint", "thigh_joint"],
        "thigh_joint": ["leg_joint", "thigh_left_joint"],  # the hips meet at the torso
        "foot_left_joint": ["leg_left_joint", "thigh_left_joint"],
        "leg_left_joint": ["foot_left_joint", "thigh_left_joint"],
        "thigh_left_joint": ["leg_left_joint", "thigh_joint"],
    },
    "ant_8x1": {
        "hip_4": ["ankle_4", "hip_1"],
        "ankle_4": ["hip_4", "hip_1"],
        "hip_1": ["ankle_1", "hip_4"],
        "ankle_1": ["hip_1", "hip_2"],
        "hip_2": ["ankle_2", "hip_1"],
        "ankle_2": ["hip_2", "hip_3"],
        "hip_3": ["ankle_3", "hip_2"],
        "ankle_3": ["hip_3", "hip_2"],
    },
}
# name -> (agents, obs_dim = 3 joints x (qpos, qvel) + torso, state_dim = gym's observation, scale)
SPECS = {
    "hopper_3x1": (3, 6 + 2 + 3, 11, 0.1),
    "halfcheetah_6x1": (6, 6 + 2 + 3, 17, 0.2),
    "walker2d_6x1": (6, 6 + 2 + 3, 17, 0.1),
    "ant_8x1": (8, 6 + 5 + 6, 27, 0.2),
}


@functools.cache
def make(task: str, **kwargs):
    return envs.make(f"mamujoco_{task}", **kwargs)


@pytest.mark.parametrize("task", list(TABLE_9))
def test_partition_nearest_joints_and_spec(task):
    env = make(task)
    model = env.brax_env.sys.mj_model
    assert env.joints == tuple(TABLE_9[task])
    nearest = {env.joints[i]: [env.joints[j] for j in row] for i, row in enumerate(env.nearest)}
    assert nearest == TABLE_9[task]
    # each agent drives the motor of its own joint
    for i, joint in enumerate(env.joints):
        assert model.joint(int(model.actuator_trnid[env.actuators[i], 0])).name == joint
    n, obs_dim, state_dim, scale = SPECS[task]
    spec = env.spec
    assert (spec.n_agents, spec.obs_dim, spec.state_dim, spec.n_actions) == (n, obs_dim, state_dim, 5)
    assert spec.episode_limit == 1000 and env.reward_scale == scale


def test_hopper_observation_by_hand():
    env = make("hopper_3x1")  # q: rootx, rootz, rooty, thigh, leg, foot; qd alike
    q = jnp.arange(6.0)
    qd = jnp.array([-0.5, -1.5, -2.5, -3.5, -4.5, 15.0])  # 15 is clipped to 10
    torso = [1, 2, -0.5, -1.5, -2.5]  # z, angle, root velocities: x hidden as in gym
    expected = [
        [3, -3.5, 4, -4.5, 5, 10, *torso],  # thigh; leg, foot
        [4, -4.5, 3, -3.5, 5, 10, *torso],  # leg; thigh, foot
        [5, 10, 4, -4.5, 3, -3.5, *torso],  # foot; leg, thigh
    ]
    np.testing.assert_array_equal(jax.jit(env.observe)(q, qd), expected)
    blind = envs.make("mamujoco_hopper_3x1", observe_torso=False, nearest_joints=1)
    assert blind.spec.obs_dim == 4
    np.testing.assert_array_equal(
        jax.jit(blind.observe)(q, qd), [[3, -3.5, 4, -4.5], [4, -4.5, 3, -3.5], [5, 10, 4, -4.5]]
    )


def test_actions_are_equally_spaced_torques_by_hand():
    np.testing.assert_allclose(
        mamujoco.discrete_to_control(jnp.arange(5), -1.0, 1.0, 5), [-1, -0.5, 0, 0.5, 1]
    )
    np.testing.assert_allclose(mamujoco.discrete_to_control(jnp.arange(3), -0.4, 0.4, 3), [-0.4, 0, 0.4])
    walker = make("walker2d_6x1")  # agents foot, leg, thigh, foot_left, leg_left, thigh_left
    ctrl = walker.control(jnp.array([0, 1, 2, 3, 4, 0]))
    model = walker.brax_env.sys.mj_model
    by_joint = {model.joint(int(model.actuator_trnid[a, 0])).name: float(ctrl[a]) for a in range(model.nu)}
    assert by_joint == {
        "foot_joint": -1.0,
        "leg_joint": -0.5,
        "thigh_joint": 0.0,
        "foot_left_joint": 0.5,
        "leg_left_joint": 1.0,
        "thigh_left_joint": -1.0,
    }


def test_bad_settings_are_refused_with_the_key():
    for kwargs, key in (
        ({"action_bins": 1}, "env.action_bins"),
        ({"nearest_joints": 3}, "env.nearest_joints"),
    ):
        with pytest.raises(ValueError, match=key):
            envs.make("mamujoco_hopper_3x1", **kwargs)


LIMIT, STEPS, N_ENVS = 5, 8, 2


@functools.cache
def rollout():
    """N_ENVS AutoReset streams of random actions on the hopper, limit LIMIT: one compile."""
    env = make("hopper_3x1", episode_limit=LIMIT)
    auto = AutoReset(env)

    def one(key):
        reset_key, steps_key = jax.random.split(key)
        state, ts0 = auto.reset(reset_key)

        def body(carry, key):
            state, avail = carry
            act_key, step_key = jax.random.split(key)
            actions = random_actions(act_key, avail)
            state, ts = auto.step(step_key, state, actions)
            return (state, ts.avail), dict(ts=ts, env=state.env_state, actions=actions)

        return dict(ts0=ts0, **jax.lax.scan(body, (state, ts0.avail), jax.random.split(steps_key, STEPS))[1])

    keys = jax.random.split(jax.random.key(0), N_ENVS)
    lowered = jax.jit(jax.vmap(one)).lower(keys)
    try:
        compiled = lowered.compile(compiler_options=FAST_COMPILE)
    except jax.errors.JaxRuntimeError:  # an XLA that lacks one of these options
        compiled = lowered.compile()
    return env, compiled, keys, jax.device_get(compiled(keys))


def test_hopper_rollout_follows_the_env_contract():
    env, compiled, keys, out = rollout()
    ts, ts0, n = out["ts"], out["ts0"], env.spec.n_agents
    assert ts.obs.shape == (N_ENVS, STEPS, n, env.spec.obs_dim) and ts.obs.dtype == np.float32
    assert ts.state.shape == (N_ENVS, STEPS, env.spec.state_dim) and ts.avail.shape == (N_ENVS, STEPS, n, 5)
    assert ts.avail.all() and ts0.avail.all() and ts.reward.dtype == np.float32
    assert not ts0.terminated.any() and not ts0.truncated.any() and (ts0.reward == 0).all()
    assert np.isfinite(ts.obs).all() and np.isfinite(ts.reward).all()
    # a few random steps do not topple the hopper: the time limit ends each episode, and the
    # stream starts again (steps counted from the fresh reset)
    assert not ts.terminated.any()
    np.testing.assert_array_equal(ts.truncated, np.arange(1, STEPS + 1)[None].repeat(N_ENVS, 0) == LIMIT)
    np.testing.assert_array_equal(
        out["env"].t,
        np.where(np.arange(1, STEPS + 1) < LIMIT, np.arange(1, STEPS + 1), np.arange(1, STEPS + 1) - LIMIT)[
            None
        ].repeat(N_ENVS, 0),
    )
    # obs and state are read from the physics state the timestep comes with
    q, qd = out["env"].brax.pipeline_state.q, np.clip(out["env"].brax.pipeline_state.qd, -10, 10)
    joint = np.stack([q[..., 3:6], qd[..., 3:6]], -1)  # [B, T, 3, 2] thigh, leg, foot
    torso = np.concatenate([q[..., 1:3], qd[..., 0:3]], -1)
    for agent, (a, b, c) in enumerate([(0, 1, 2), (1, 0, 2), (2, 1, 0)]):
        expected = np.concatenate([joint[..., a, :], joint[..., b, :], joint[..., c, :], torso], -1)
        np.testing.assert_allclose(ts.obs[:, :, agent], expected, rtol=1e-6)
    np.testing.assert_array_equal(ts.state, out["env"].brax.obs)
    # reward: Table 9's scale times brax's reward (the steps that do not end an episode carry it)
    live = ~ts.truncated
    np.testing.assert_allclose(ts.reward[live], 0.1 * out["env"].brax.reward[live], rtol=1e-6)
    # the actions reach the motors: brax's control cost is 1e-3 x the sum of squared torques
    torque = -1.0 + 0.5 * out["actions"]  # 5 levels over [-1, 1]
    cost = -1e-3 * (torque**2).sum(-1)
    np.testing.assert_allclose(out["env"].brax.metrics["reward_ctrl"][live], cost[live], rtol=1e-5)
    # deterministic per key, different across keys
    again = jax.device_get(compiled(keys))
    np.testing.assert_array_equal(again["ts"].obs, ts.obs)
    assert not np.array_equal(ts0.obs[0], ts0.obs[1])
