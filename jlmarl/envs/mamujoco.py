"""Multi-agent MuJoCo in JAX: brax's locomotion robots on MuJoCo MJX physics, one agent per joint.

`mamujoco_<robot>_<partition>` (seed 001, appendix B.2 and Table 9): `hopper_3x1`,
`halfcheetah_6x1`, `walker2d_6x1`, `ant_8x1`. Each agent drives one actuated joint, agents in
Table 9's order:

    hopper       thigh_joint, leg_joint, foot_joint
    halfcheetah  bthigh, bshin, bfoot, fthigh, fshin, ffoot
    walker2d     foot_joint, leg_joint, thigh_joint, foot_left_joint, leg_left_joint, thigh_left_joint
    ant          hip_4, ankle_4, hip_1, ankle_1, hip_2, ankle_2, hip_3, ankle_3

Physics, reward, reset noise and the healthy check are brax's env of that robot (gym's
definitions: forward velocity + healthy bonus - control cost), run on `backend` (default
"mjx": MuJoCo's own solver in JAX, which multi-agent MuJoCo runs; brax's own pipelines are
approximations that brax no longer maintains). An unhealthy robot (hopper, walker2d, ant)
terminates the episode; `episode_limit` (1000, gym's) truncates it.

Actions: agent i's discrete action k in [0, action_bins) sets its joint's control to
`low + (high - low) * k / (action_bins - 1)` over the actuator's control range (the paper:
"the action space is discretised into N equally spaced atomic actions"; we read it per
agent, N levels of its one motor, so a joint action is a grid of N^n torques; N odd keeps the
zero torque). Every action is always available.

Observation of agent i: (qpos, qvel) of its own joint, then of its `nearest_joints` (2, Table 9)
nearest joints in the robot's joint graph (ties to the joint nearer in Table 9's order, which
lists each limb's joints together, so a hip sees its own ankle first), then, with `observe_torso`,
the torso's gym observation (its position without x (and y for the ant), its velocities).
The joint graph links a joint to the joint that moves its body's nearest jointed ancestor; the
joints that hang from the torso are all linked to one another (multi-agent MuJoCo's torso
hyperedge), so the two hips of the walker are neighbours. Velocities are clipped to [-10, 10]
as brax's observation clips them. Global state: brax's (gym's) observation of the whole robot.

Reward: brax's reward times `reward_scale` (Table 9: ant and halfcheetah 0.2, hopper and
walker2d 0.1; the paper scales returns for its plots; 1.0 gives gym's returns).

Differences to the paper's multi-agent MuJoCo: its physics is MuJoCo's C engine through gym;
ours is MJX through brax's env definitions (the same robots' XML files as gym's, the ant without
contact forces in its observation, as brax and gym's v4 default). The paper's agents also see
their ID and last action (Table 9): the learners add both (jlmarl.nets.agents).
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jlmarl.envs.base import EnvSpec, Timestep, make_timestep
from jlmarl.envs.registry import register

# robot -> (brax env name, joints in agent order (Table 9), root coordinates gym hides, return scale)
ROBOTS = {
    "hopper_3x1": ("hopper", ("thigh_joint", "leg_joint", "foot_joint"), 1, 0.1),
    "halfcheetah_6x1": ("halfcheetah", ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"), 1, 0.2),
    "walker2d_6x1": (
        "walker2d",
        ("foot_joint", "leg_joint", "thigh_joint", "foot_left_joint", "leg_left_joint", "thigh_left_joint"),
        1,
        0.1,
    ),
    "ant_8x1": (
        "ant",
        ("hip_4", "ankle_4", "hip_1", "ankle_1", "hip_2", "ankle_2", "hip_3", "ankle_3"),
        2,
        0.2,
    ),
}
BACKENDS = ("mjx", "generalized", "positional", "spring")
VELOCITY_CLIP = 10.0


def joint_graph(parent_body: np.ndarray, joint_body: np.ndarray) -> np.ndarray:
    """Adjacency [J, J] of the joints (indices into joint_body) through the body tree.

    parent_body [B]: each body's parent (the root's is itself); joint_body [J]: each joint's body.
    A joint's parent joint moves the nearest ancestor body that one of the joints moves; joints
    with none (they hang from the torso) are all linked to each other."""
    n = len(joint_body)
    moved = {int(b): j for j, b in enumerate(joint_body)}
    adjacency = np.zeros((n, n), bool)
    top = []
    for j, body in enumerate(joint_body):
        body = int(parent_body[body])
        while body not in moved and parent_body[body] != body:
            body = int(parent_body[body])
        if body in moved:
            adjacency[j, moved[body]] = adjacency[moved[body], j] = True
        else:
            top.append(j)
    for a in top:
        for b in top:
            adjacency[a, b] |= a != b
    return adjacency


def nearest_in_graph(adjacency: np.ndarray, k: int) -> np.ndarray:
    """[J, k]: each joint's k nearest other joints by graph distance; ties go to the joint
    nearer in index order (Table 9 lists each limb's joints together), then the lower index."""
    n = len(adjacency)
    out = []
    for j in range(n):
        dist = np.full(n, n + 1)
        dist[j], frontier, d = 0, [j], 0
        while frontier:
            d += 1
            frontier = [b for a in frontier for b in np.flatnonzero(adjacency[a]) if dist[b] > d]
            dist[frontier] = d
        others = sorted((int(dist[b]), abs(b - j), b) for b in range(n) if b != j)
        out.append([b for _, _, b in others[:k]])
    return np.array(out, np.int32).reshape(n, k)


def discrete_to_control(actions: jax.Array, low: jax.Array, high: jax.Array, bins: int) -> jax.Array:
    """actions int [n] in [0, bins) -> controls float [n], equally spaced over [low, high]."""
    return low + (high - low) * actions.astype(jnp.float32) / (bins - 1)


@struct.dataclass
class MaMuJoCoState:
    brax: object  # brax.envs.State: pipeline_state (q [nq], qd [nv], ...), obs, reward, done, metrics
    t: jax.Array  # int32 [], steps taken


class MaMuJoCo:
    """A brax robot split into one agent per actuated joint (see the module docstring)."""

    def __init__(
        self,
        name: str,
        robot: str,
        joints: tuple[str, ...],
        hidden_root: int,
        action_bins: int = 5,
        nearest_joints: int = 2,
        observe_torso: bool = True,
        reward_scale: float = 1.0,
        episode_limit: int = 1000,
        backend: str = "mjx",
    ):
        if backend not in BACKENDS:
            raise ValueError(f"{name}: env.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if not isinstance(action_bins, int) or action_bins < 2:
            raise ValueError(f"{name}: env.action_bins must be an integer >= 2, got {action_bins!r}")
        if not 0 <= nearest_joints < len(joints):
            raise ValueError(
                f"{name}: env.nearest_joints must be in [0, {len(joints) - 1}], got {nearest_joints}"
            )
        import mujoco  # heavy (MuJoCo, MJX): only when an env is built
        from brax import envs as brax_envs

        # MuJoCo writes its warnings (half_cheetah.xml's deprecated settotalmass) to MUJOCO_LOG.TXT
        # in the working directory unless a callback takes them: make them Python warnings
        previous = mujoco.get_mju_user_warning()
        mujoco.set_mju_user_warning(lambda message: warnings.warn(f"MuJoCo: {message}", stacklevel=1))
        try:
            self.brax_env = brax_envs.get_environment(robot, backend=backend)
        finally:
            mujoco.set_mju_user_warning(previous)
        model = self.brax_env.sys.mj_model
        joint_ids = [model.joint(j).id for j in joints]
        actuator_of = {int(model.actuator_trnid[a, 0]): a for a in range(model.nu)}
        if model.nu != len(joints) or set(actuator_of) != set(joint_ids):
            raise ValueError(
                f"{name}: the partition {joints} must name each of {robot}'s {model.nu} motors once"
            )
        self.joints = joints
        self.actuators = np.array([actuator_of[j] for j in joint_ids], np.int32)  # [n] agent -> actuator
        self.qpos_index = np.array([model.jnt_qposadr[j] for j in joint_ids], np.int32)  # [n]
        self.qvel_index = np.array([model.jnt_dofadr[j] for j in joint_ids], np.int32)  # [n]
        self.low = np.asarray(model.actuator_ctrlrange[self.actuators, 0], np.float32)  # [n]
        self.high = np.asarray(model.actuator_ctrlrange[self.actuators, 1], np.float32)  # [n]
        self.adjacency = joint_graph(model.body_parentid, model.jnt_bodyid[joint_ids])
        self.nearest = nearest_in_graph(self.adjacency, nearest_joints)  # [n, k] agent indices
        self.observed = np.concatenate([np.arange(len(joints))[:, None], self.nearest], 1)  # [n, 1 + k]
        # the torso: the root joint's coordinates but those gym hides (x, and y for the ant)
        root_q = int(model.jnt_qposadr[joint_ids].min())
        root_v = int(model.jnt_dofadr[joint_ids].min())
        self.torso_q, self.torso_v = np.arange(hidden_root, root_q), np.arange(root_v)
        self.action_bins, self.observe_torso = action_bins, observe_torso
        self.reward_scale = float(reward_scale)
        n = len(joints)
        obs_dim = 2 * (1 + nearest_joints) + (len(self.torso_q) + len(self.torso_v)) * observe_torso
        self.spec = EnvSpec(
            name=name,
            n_agents=n,
            obs_dim=obs_dim,
            state_dim=model.nq - hidden_root + model.nv,  # brax's obs: q without x (and y), qd
            n_actions=action_bins,
            episode_limit=episode_limit,
        )

    def observe(self, q: jax.Array, qd: jax.Array) -> jax.Array:
        """Agents' observations [n, obs_dim] from the generalized positions q [nq] and velocities qd [nv]."""
        qd = jnp.clip(qd, -VELOCITY_CLIP, VELOCITY_CLIP)
        joints = jnp.stack([q[self.qpos_index], qd[self.qvel_index]], -1)  # [n, 2]
        obs = joints[self.observed].reshape(self.spec.n_agents, -1)  # [n, 2 (1 + k)]
        if self.observe_torso:
            torso = jnp.concatenate([q[self.torso_q], qd[self.torso_v]])
            obs = jnp.concatenate([obs, jnp.broadcast_to(torso, (self.spec.n_agents, torso.shape[0]))], -1)
        return obs

    def control(self, actions: jax.Array) -> jax.Array:
        """The robot's control vector [nu] (actuator order) for the agents' actions int [n]."""
        per_agent = discrete_to_control(actions, self.low, self.high, self.action_bins)
        return jnp.zeros(self.spec.n_agents, jnp.float32).at[self.actuators].set(per_agent)

    def _timestep(self, s: MaMuJoCoState, reward, terminated) -> Timestep:
        ps = s.brax.pipeline_state
        truncated = (s.t >= self.spec.episode_limit) & ~terminated
        avail = jnp.ones((self.spec.n_agents, self.action_bins), jnp.bool_)
        return make_timestep(
            self.spec, self.observe(ps.q, ps.qd), s.brax.obs, avail, reward, terminated, truncated
        )

    def reset(self, key: jax.Array) -> tuple[MaMuJoCoState, Timestep]:
        s = MaMuJoCoState(brax=self.brax_env.reset(key), t=jnp.int32(0))
        return s, self._timestep(s, 0.0, jnp.bool_(False))

    def step(self, key: jax.Array, s: MaMuJoCoState, actions: jax.Array) -> tuple[MaMuJoCoState, Timestep]:
        del key  # deterministic physics
        s = MaMuJoCoState(brax=self.brax_env.step(s.brax, self.control(actions)), t=s.t + 1)
        return s, self._timestep(s, self.reward_scale * s.brax.reward, s.brax.done > 0)


def mamujoco(task: str, reward_scale: float | None = None, **kwargs) -> MaMuJoCo:
    robot, joints, hidden_root, scale = ROBOTS[task]
    scale = scale if reward_scale is None else reward_scale
    return MaMuJoCo(f"mamujoco_{task}", robot, joints, hidden_root, reward_scale=scale, **kwargs)


for _task in ROBOTS:
    register(f"mamujoco_{_task}", functools.partial(mamujoco, _task))
