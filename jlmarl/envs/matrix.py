"""Repeated and one-shot cooperative matrix games.

`matrix_three_state` (LIMARL, seed 000, fig. 1 and appendix D): 2 agents,
actions {A, B, C}; the hidden state cycles S1 -> S2 -> S3 -> S1 whatever the
agents do, starting uniformly at random; 10 steps. The global state is
one-hot(3); each agent observes only its last entry (1 in S3, 0 otherwise), so
S1 and S2 look the same and only the history (the phase of the cycle) tells them
apart. Reward = payoff[state][a1][a2]; the optimum is (A,A), (B,B), (C,C).
The 10-step horizon is a time limit: the last step is `truncated`.

`matrix_one_step` (QTRAN game, seed 003 table I): 2 agents, 3 actions, one step,
payoff [[8,-12,-12],[-12,0,0],[-12,0,0]]; constant observation and state; the
step is a true terminal. Nothing is hidden.

Both expose `payoff` ([n_states, n_actions, n_actions]) and `state_index(state)`
so that evaluation can print learned Q_tot tables next to the truth.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jlmarl.envs.base import EnvSpec, Timestep, make_timestep
from jlmarl.envs.registry import register

THREE_STATE_PAYOFF = np.array(
    [
        [[4, 0, 0], [0, -2, 0], [0, 0, 0]],
        [[-1, 0, 0], [0, 1, 0], [0, 0, 0]],
        [[0, 0, 0], [0, -2, 0], [0, 0, 4]],
    ],
    dtype=np.float32,
)
QTRAN_PAYOFF = np.array([[[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]], dtype=np.float32)


@struct.dataclass
class MatrixState:
    state_idx: jax.Array  # int32 [], index of the current matrix
    t: jax.Array  # int32 [], steps taken


class MatrixGame:
    """Two-agent game whose hidden state cycles through `payoff`'s matrices.

    observe="last_onehot": each agent sees the last entry of one-hot(state);
    observe="constant": each agent sees a constant 1.
    terminal=True makes the episode end a true terminal instead of a time limit.
    """

    def __init__(
        self,
        name: str,
        payoff: np.ndarray,
        episode_limit: int,
        observe: str = "last_onehot",
        random_start: bool = True,
        terminal: bool = False,
    ):
        payoff = np.asarray(payoff, np.float32)
        if payoff.ndim != 3 or payoff.shape[1] != payoff.shape[2]:
            raise ValueError(f"{name}: payoff must be [n_states, n_actions, n_actions], got {payoff.shape}")
        if observe not in ("last_onehot", "constant"):
            raise ValueError(f"{name}: observe must be 'last_onehot' or 'constant', got {observe!r}")
        self.payoff = payoff
        self.n_states = payoff.shape[0]
        self.observe = observe
        self.random_start = random_start
        self.terminal = terminal
        self.spec = EnvSpec(
            name=name,
            n_agents=2,
            obs_dim=1,
            state_dim=self.n_states,
            n_actions=payoff.shape[1],
            episode_limit=episode_limit,
            fixed_length=True,  # every game lasts episode_limit steps
        )

    def state_index(self, state: jax.Array) -> jax.Array:
        """Index of the matrix in play, from the global state vector(s) [..., state_dim]."""
        return jnp.argmax(state, axis=-1)

    def _timestep(self, s: MatrixState, reward, done) -> Timestep:
        onehot = jax.nn.one_hot(s.state_idx, self.n_states)
        seen = onehot[-1] if self.observe == "last_onehot" else jnp.float32(1.0)
        obs = jnp.full((2, 1), seen, jnp.float32)
        avail = jnp.ones((2, self.spec.n_actions), jnp.bool_)
        terminated = jnp.logical_and(done, self.terminal)
        truncated = jnp.logical_and(done, not self.terminal)
        return make_timestep(self.spec, obs, onehot, avail, reward, terminated, truncated)

    def reset(self, key: jax.Array):
        if self.random_start:
            idx = jax.random.randint(key, (), 0, self.n_states)
        else:
            idx = jnp.int32(0)
        s = MatrixState(state_idx=idx.astype(jnp.int32), t=jnp.int32(0))
        return s, self._timestep(s, 0.0, False)

    def step(self, key: jax.Array, s: MatrixState, actions: jax.Array):
        del key  # deterministic dynamics
        reward = jnp.asarray(self.payoff)[s.state_idx, actions[0], actions[1]]
        s = MatrixState(state_idx=(s.state_idx + 1) % self.n_states, t=s.t + 1)
        return s, self._timestep(s, reward, s.t >= self.spec.episode_limit)


def matrix_three_state(episode_limit: int = 10) -> MatrixGame:
    return MatrixGame("matrix_three_state", THREE_STATE_PAYOFF, episode_limit)


def matrix_one_step() -> MatrixGame:
    return MatrixGame(
        "matrix_one_step",
        QTRAN_PAYOFF,
        episode_limit=1,
        observe="constant",
        random_start=False,
        terminal=True,
    )


register("matrix_three_state", matrix_three_state)
register("matrix_one_step", matrix_one_step)
