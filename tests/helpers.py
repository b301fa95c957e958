"""Small shared pieces of the test suite."""

import jax.numpy as jnp

from jlmarl.algos.q_learning import init_recurrent_actor
from jlmarl.core.algo import Algo, UpdateContext
from jlmarl.envs.base import EnvSpec, make_timestep, random_actions


def update_ctx(phase: int = 0, updates: int = 0, env_steps: int = 0, episodes: int = 0) -> UpdateContext:
    """The clock an update call is told (phase 0 = main training for methods without phases)."""
    return UpdateContext(jnp.int32(env_steps), jnp.int32(episodes), jnp.int32(updates), jnp.int32(phase))


class Visible:
    """A 3-step, 2-agent env with one declared extra: the step count on a [2, 2] grid."""

    def __init__(self):
        extras = (("seen", (2, 2), "bool"),)
        self.spec = EnvSpec("visible", 2, 1, 1, 2, episode_limit=3, extras=extras)

    def _ts(self, t, **kw):
        seen = jnp.eye(2, dtype=bool) | (t % 2 == 1)
        return make_timestep(
            self.spec, jnp.zeros((2, 1)), jnp.zeros(1), jnp.ones((2, 2)), extras={"seen": seen}, **kw
        )

    def reset(self, key):
        return jnp.int32(0), self._ts(0)

    def step(self, key, t, actions):
        t = t + 1
        return t, self._ts(t, reward=1.0, truncated=t >= 3)


def counting_algo(spec, replay: bool, phases=(), recent=0) -> Algo:
    """Learns nothing; its metrics report what the engine handed to update."""

    def update(ts, batch, key, ctx):
        metrics = {
            "batch_episodes": jnp.float32(batch.reward.shape[0]),
            "batch_steps": batch.mask.sum().astype(jnp.float32),
            "phase": ctx.phase.astype(jnp.float32),
            "updates": ctx.updates.astype(jnp.float32),
            "env_steps": ctx.env_steps.astype(jnp.float32),
        }
        if recent:
            metrics["recent_reward"] = ctx.recent.reward.sum()
        return ts + 1, metrics

    return Algo(
        name="counting",
        init=lambda key: jnp.int32(0),
        init_actor=lambda n: init_recurrent_actor(n, spec.n_agents, 1),
        act=lambda ts, actor, obs, avail, key, steps, greedy: (random_actions(key, avail), actor),
        update=update,
        target_update=lambda ts: ts,
        phases=phases,
        replay=replay,
        recent_episodes=recent,
    )
