"""Small shared pieces of the test suite."""

import jax.numpy as jnp

from jlmarl.core.algo import UpdateContext


def update_ctx(phase: int = 0, updates: int = 0, env_steps: int = 0, episodes: int = 0) -> UpdateContext:
    """The clock an update call is told (phase 0 = main training for methods without phases)."""
    return UpdateContext(jnp.int32(env_steps), jnp.int32(episodes), jnp.int32(updates), jnp.int32(phase))
