from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jlmarl.core.buffer import (
    EpisodeBatch,
    buffer_add,
    buffer_init,
    buffer_sample,
    check_buffer_fits,
    check_program_fits,
    episode_nbytes,
    episode_shapes,
)
from jlmarl.envs.base import EnvSpec

SPEC = EnvSpec("toy", n_agents=2, obs_dim=3, state_dim=4, n_actions=5, episode_limit=6)


def episodes(ids):
    """Episodes whose every entry equals their id, so slots can be told apart."""
    ids = jnp.asarray(ids)
    fields = {}
    for name, (shape, dtype) in episode_shapes(SPEC).items():
        value = ids.reshape((-1,) + (1,) * len(shape))
        fields[name] = jnp.broadcast_to(value if dtype != np.bool_ else value % 2 == 1, (len(ids), *shape))
        fields[name] = fields[name].astype(dtype)
    return EpisodeBatch(**fields)


def test_shapes_and_bytes():
    buf = buffer_init(SPEC, 7)
    assert buf.data.obs.shape == (7, 7, 2, 3) and buf.data.obs.dtype == jnp.float32
    assert buf.data.state.shape == (7, 7, 4)
    assert buf.data.avail.shape == (7, 7, 2, 5) and buf.data.avail.dtype == jnp.bool_
    assert buf.data.actions.shape == (7, 6, 2) and buf.data.actions.dtype == jnp.int32
    assert buf.data.mask.shape == (7, 6)
    nbytes = sum(x.nbytes for x in jax.tree.leaves(buf.data))
    assert nbytes == 7 * episode_nbytes(SPEC)


def test_insert_and_wrap_around():
    buf = buffer_init(SPEC, 5)
    buf = buffer_add(buf, episodes([1, 2, 3]))
    assert int(buf.pos) == 3 and int(buf.size) == 3
    buf = buffer_add(buf, episodes([4, 5, 6]))  # 6 overwrites slot 0
    assert int(buf.pos) == 1 and int(buf.size) == 5
    np.testing.assert_array_equal(buf.data.reward[:, 0], [6, 2, 3, 4, 5])
    buf = buffer_add(buf, episodes([7, 8, 9, 10, 11]))
    np.testing.assert_array_equal(buf.data.actions[:, 0, 0], [11, 7, 8, 9, 10])
    assert int(buf.size) == 5


def test_sample_only_stored_and_distinct():
    buf = buffer_add(buffer_init(SPEC, 10), episodes([1, 2, 3, 4]))
    seen = set()
    for i in range(50):
        batch = buffer_sample(buf, jax.random.PRNGKey(i), 3)
        ids = np.asarray(batch.reward[:, 0]).tolist()
        assert len(set(ids)) == 3 and set(ids) <= {1, 2, 3, 4}
        seen.update(ids)
    assert seen == {1, 2, 3, 4}  # uniform: every stored episode gets drawn


def test_too_large_buffer_fails_before_allocating():
    huge = EnvSpec("huge", n_agents=10, obs_dim=1000, state_dim=1000, n_actions=20, episode_limit=1000)
    with pytest.raises(MemoryError, match=r"buffer_size=1000000\) .* lower buffer_size \(at most \d+ fits\)"):
        check_buffer_fits(huge, 1_000_000, 1, jax.devices()[0])
    assert check_buffer_fits(SPEC, 10, 2, jax.devices()[0]) == 20 * episode_nbytes(SPEC)
    # the evaluation episodes count too, and the message names the setting to lower
    with pytest.raises(MemoryError, match=r"lower test_episodes \(at most \d+ fits\)"):
        check_buffer_fits(huge, 10, 1, jax.devices()[0], episodes_in_flight={"test_episodes": 1_000_000})
    in_flight = {"num_envs": 4, "test_episodes": 6}
    assert check_buffer_fits(
        SPEC, 10, 2, jax.devices()[0], episodes_in_flight=in_flight
    ) == 40 * episode_nbytes(SPEC)


class _Analysed:
    """A compiled program as check_program_fits reads it: only its memory analysis."""

    def __init__(self, temp_bytes):
        self.temp_bytes = temp_bytes

    def memory_analysis(self):
        return None if self.temp_bytes is None else SimpleNamespace(temp_size_in_bytes=self.temp_bytes)


def test_a_chunk_whose_working_memory_cannot_fit_is_refused_before_it_trains():
    device = jax.devices()[0]
    sizes = {"num_seeds": 3, "num_envs": 8, "batch_size": 128}
    message = r"needs \d+\.\d+ GiB .*\(num_seeds=3, num_envs=8, batch_size=128\) .*lower batch_size"
    with pytest.raises(MemoryError, match=message):
        check_program_fits(_Analysed(1 << 60), device, sizes)
    assert check_program_fits(_Analysed(4096), device, sizes) == 4096
    assert check_program_fits(_Analysed(None), device, sizes) == 0  # a backend without the analysis
    # a real compiled program's own figure is what is read
    compiled = jax.jit(lambda x: jnp.cumsum(x @ x.T, axis=0)[-1]).lower(jnp.ones((256, 256))).compile()
    assert check_program_fits(compiled, device, sizes) == compiled.memory_analysis().temp_size_in_bytes
