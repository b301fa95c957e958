"""Host environments: the io_callback bridge, its workers, faults, and the adapters."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jlmarl.config import ConfigError, load_config
from jlmarl.core.rollout import UniformRandomPolicy, run_episodes
from jlmarl.envs import host, matrix
from jlmarl.envs.host import HostEnvError, HostSettings
from jlmarl.pyenvs import adapters, threefry

ROOT = Path(__file__).resolve().parent.parent
LBF = "Foraging-8x8-2p-2f-v3"


def alive(pid: int) -> bool:
    """A process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def workers_of(parent_pid: int) -> list[int]:
    """Pids of live host workers started by parent_pid (from their command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"jlmarl.pyenvs.worker" in argv and str(parent_pid).encode() in argv and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def wait_gone(pids, timeout=10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


@pytest.fixture
def twin():
    env = host.numpy_matrix_three_state(host={"workers": 3})
    yield env
    env.close()


SEED_KEYS = jax.random.split(jax.random.PRNGKey(3), 2)


def rollouts(env):
    """Jitted: episodes of 2 seeds (vmapped) at an evaluation-sized batch (5), then a training one (3)."""
    roll = lambda k, n: run_episodes(env, UniformRandomPolicy(), None, k, n, jnp.int32(0), False)  # noqa: E731
    return jax.jit(lambda keys: [jax.vmap(roll, in_axes=(0, None))(keys, n) for n in (5, 3)])


@pytest.mark.parametrize("partitionable", [True, False])
def test_numpy_threefry_replays_jax_draws(partitionable):
    old = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", partitionable)
    try:
        keys = jax.random.split(jax.random.PRNGKey(7), 64)
        spans = ((0, 3), (-5, 1_000_003))

        @jax.jit
        @jax.vmap
        def draws(k):
            return [jax.random.randint(k, (), lo, hi) for lo, hi in spans], jax.random.split(k)

        ints, splits = draws(keys)
        for j, key in enumerate(np.asarray(keys)):
            assert [threefry.randint(key, lo, hi, partitionable) for lo, hi in spans] == [
                int(x[j]) for x in ints
            ]
            np.testing.assert_array_equal(np.stack(threefry.split2(key, partitionable)), splits[j])
    finally:
        jax.config.update("jax_threefry_partitionable", old)


def test_bridge_is_exact_under_the_seed_vmap_and_survives_a_killed_worker(twin, monkeypatch):
    """Same keys -> the same obs, states, avail, actions, rewards and dones as the JAX
    env, with 2 seeds vmapped (one callback for both) and two batch sizes (training
    and evaluation share the instances). Then a worker is killed mid-episode: its
    episodes are cut, it is restarted, and the next rollouts are whole and exact."""
    host_run, jax_run = rollouts(twin), rollouts(matrix.matrix_three_state())
    expected = jax_run(SEED_KEYS)
    for n_envs, (hb, hs), (jb, js) in zip((5, 3), host_run(SEED_KEYS), expected, strict=True):
        for field in ("obs", "state", "avail", "actions", "reward", "terminated", "mask"):
            np.testing.assert_array_equal(getattr(hb, field), getattr(jb, field), err_msg=field)
        np.testing.assert_array_equal(hs.returns, js.returns)
        np.testing.assert_array_equal(hs.lengths, js.lengths)
        assert hb.obs.shape == (2, n_envs, 11, 2, 1)
        np.testing.assert_array_equal(hs.info["host_env_restarts"], 0.0)
    assert twin.pool.instances == 2 * 5  # seeds x the largest batch, reused
    assert len(twin.pool.pids()) == 3  # host.workers caps the processes
    assert twin.restarts == 0

    step, calls = host.WorkerPool.step, []

    def step_killing_worker_1_at_call_4(self, episode, actions):
        calls.append(1)
        if len(calls) == 4:
            os.kill(self.workers[1].proc.pid, signal.SIGKILL)
        return step(self, episode, actions)

    monkeypatch.setattr(host.WorkerPool, "step", step_killing_worker_1_at_call_4)
    (hb, hs), _ = host_run(SEED_KEYS)
    # instances s * 5 + j; worker 1 (of 3) hosts 1, 4 and 7 = seed 0 env 1, seed 0 env 4, seed 1 env 2
    cut = np.zeros((2, 5), np.float32)
    cut[0, 1] = cut[0, 4] = cut[1, 2] = 1.0
    np.testing.assert_array_equal(hs.info["host_env_restarts"], cut)
    np.testing.assert_array_equal(hs.lengths, np.where(cut > 0, 4, 10))  # cut at the 4th step
    assert not hb.terminated.any()  # a cut is a truncation, never a false terminal
    uncut = cut == 0
    np.testing.assert_array_equal(hs.returns[uncut], expected[0][1].returns[uncut])
    assert twin.restarts == 1 and len(twin.pool.pids()) == 3
    # the run goes on: the next rollouts are whole and exact again
    for (hb, hs), (jb, js) in zip(host_run(SEED_KEYS), expected, strict=True):
        np.testing.assert_array_equal(hb.obs, jb.obs)
        np.testing.assert_array_equal(hs.returns, js.returns)
        np.testing.assert_array_equal(hs.info["host_env_restarts"], 0.0)


def test_failing_more_than_max_restarts_in_a_row_stops_with_a_clear_message():
    # an env that cannot even start (think: the game fails to launch) fails at every restart
    with pytest.raises(HostEnvError, match=r"failed 3 times in a row \(env.host.max_restarts=2\)") as err:
        host.lbforaging("Foraging-nope-v3", host={"max_restarts": 2})
    assert "unknown lbforaging id 'Foraging-nope-v3'" in str(err.value)
    # a failing step inside the jitted loop stops the run with the same message
    env = host.numpy_matrix_three_state(host={"max_restarts": 0})
    pids = env.pool.pids()
    try:
        bad = jnp.array([[7, 0], [0, 0]])  # action 7 does not exist: the twin raises IndexError

        @jax.jit
        def reset_and_step(keys):
            state, _ = env.reset(keys)
            return env.step(keys, state, bad)[1].reward

        with pytest.raises(Exception, match=r"failed 1 time in a row \(env.host.max_restarts=0\)") as err:
            jax.block_until_ready(reset_and_step(jax.random.split(jax.random.PRNGKey(0), 2)))
        assert "IndexError" in str(err.value)
        assert not env.pool.pids() and not wait_gone(pids)  # every worker shut down
    finally:
        env.close()


def test_stepping_an_episode_reset_by_another_rollout_is_refused(twin):
    state_a, _ = twin.reset(jax.random.split(jax.random.PRNGKey(0), 2))
    twin.reset(jax.random.split(jax.random.PRNGKey(1), 2))
    with pytest.raises(Exception, match="one rollout at a time"):
        twin.step(None, state_a, jnp.zeros((2, 2), jnp.int32))


SCRIPT = """
import signal, sys, time, jax
from jlmarl.envs import host
# A terminal's Ctrl-C: a test run started in the background (`make test &`) ignores SIGINT,
# and an ignored signal stays ignored in every process it starts.
signal.signal(signal.SIGINT, signal.default_int_handler)
env = host.numpy_matrix_three_state()
env.reset(jax.random.split(jax.random.PRNGKey(0), 3))
print(" ".join(map(str, env.pool.pids())), flush=True)
for _ in range(600):  # short sleeps: a signal delivered to another thread interrupts none
    time.sleep(0.1)  # of them, and Python runs its handler only between them
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_no_worker_outlives_its_parent(sig):
    """Killed (SIGKILL: the workers notice) or interrupted (Ctrl-C: shut down at exit)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 3 and all(alive(p) for p in pids)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert wait_gone(pids) == []


def test_qmix_on_lbforaging_through_the_cli_leaves_no_workers(tmp_path):
    run_dir = tmp_path / "lbf"
    args = [
        "algo=qmix",
        f"env=lbforaging_{LBF}",
        "total_steps=300",
        "num_envs=3",
        "batch_size=3",
        "buffer_size=16",
        "test_interval=150",
        "test_episodes=2",
        "algo.hidden_dim=8",
        "algo.mixing_embed_dim=8",
        "algo.hypernet_embed=8",
        "time_buckets=1",
        "env.max_episode_steps=10",
        "progress=false",
        f"run_dir={run_dir}",
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jlmarl.train", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    seen: set[int] = set()
    while proc.poll() is None:  # the workers this run starts, for the check after it ends
        seen.update(workers_of(proc.pid))
        time.sleep(0.2)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert "final test_return_mean" in out.decode()
    lines = [json.loads(x) for x in (run_dir / "metrics" / "seed_0.jsonl").read_text().splitlines()]
    assert lines[-1]["env_steps"] >= 300 and "loss" in lines[-1]
    assert all(x["host_env_restarts_mean"] == 0 and 0 < x["test_ep_length"] <= 10 for x in lines)
    assert len(seen) == 3  # max(num_envs, test_episodes) instances, one worker each
    assert wait_gone(seen) == []


def test_lbforaging_adapter_maps_gymnasium_to_the_pymarl_api():
    env = adapters.LBForaging(LBF)
    info = env.get_env_info()
    assert info == {"n_agents": 2, "obs_shape": 12, "state_shape": 24, "n_actions": 6, "episode_limit": 50}
    key = np.array([1, 2], np.uint32)
    env.seed_episode(key)
    env.reset()
    first = np.stack(env.get_obs())
    env.seed_episode(key)
    env.reset()
    np.testing.assert_array_equal(np.stack(env.get_obs()), first)  # same key, same episode
    # the state is scaled by 1 / grid size (8), as env=lbf_*'s; normalize_state=false keeps it raw
    np.testing.assert_array_equal(env.get_state(), first.reshape(-1) / np.float32(8))
    raw = adapters.LBForaging(LBF, normalize_state=False)
    raw.seed_episode(key)
    raw.reset()
    np.testing.assert_array_equal(raw.get_state(), first.reshape(-1))
    raw.close()
    inner = env._env
    for _ in range(60):
        avail = np.array(env.get_avail_actions())
        valid = [[a.value for a in inner._valid_actions[p]] for p in inner.players]
        assert [list(np.flatnonzero(row)) for row in avail] == valid
        reward, ended, info = env.step([int(np.flatnonzero(row)[-1]) for row in avail])
        if ended:
            break
    assert ended  # within lbforaging's 50-step limit
    assert info.get("episode_limit", False) == (inner.field.sum() > 0)  # food left = truncation
    env.close()


def test_smac_absent_gives_install_instructions(monkeypatch, tmp_path):
    monkeypatch.setattr(adapters, "_package_dir", lambda name: None)
    assert "pip install git+https://github.com/oxwhirl/smac.git" in adapters.smac_missing()
    assert "pip install git+https://github.com/oxwhirl/smacv2.git" in adapters.smacv2_missing()
    with pytest.raises(HostEnvError, match="env=smac_3m needs oxwhirl's SMAC"):
        host.smac("3m")
    (tmp_path / "smac").mkdir()  # a `smac` without env/starcraft2: PyPI's unrelated package
    monkeypatch.setattr(adapters, "_package_dir", lambda name: tmp_path / name)
    assert "is not oxwhirl's SMAC: pip uninstall smac" in adapters.smac_missing()
    (tmp_path / "smac" / "env" / "starcraft2").mkdir(parents=True)
    monkeypatch.setenv("SC2PATH", str(tmp_path / "nowhere"))
    assert "StarCraft II was not found" in adapters.smac_missing() and "SC2PATH" in adapters.smac_missing()


@pytest.mark.skipif(adapters.smac_missing() is None, reason="SMAC is installed: see the next test")
def test_smac_names_are_refused_at_config_time_with_the_reason():
    with pytest.raises(ConfigError, match="env=smac_corridor is not supported: needs oxwhirl's SMAC"):
        load_config(["env=smac_corridor"])
    with pytest.raises(ConfigError, match="env=smacv2_zerg_10v10 is not supported: needs SMACv2"):
        load_config(["env=smacv2_zerg_10v10"])


@pytest.mark.skipif(
    adapters.smac_missing() is not None, reason=f"smac_3m cannot run here: {adapters.smac_missing()}"
)
def test_smac_3m_runs_through_the_bridge():
    env = host.smac("3m")
    try:
        batch, stats = jax.jit(
            lambda k: run_episodes(env, UniformRandomPolicy(), None, k, 2, jnp.int32(0), False)
        )(jax.random.PRNGKey(0))
        assert env.spec.n_agents == 3 and env.spec.info_keys == ("won", "host_env_restarts")
        assert (stats.lengths > 0).all() and batch.avail[:, 0].any(-1).all()
    finally:
        env.close()


def test_host_settings_are_checked():
    assert HostSettings.from_dict(None) == HostSettings()
    for bad, message in [
        ({"max_restarts": -1}, "env.host.max_restarts must be a non-negative integer"),
        ({"workers": 0}, "env.host.workers must be null or a positive integer"),
        ({"timeout_s": 0}, "env.host.timeout_s must be a positive number"),
        ({"retries": 1}, "unknown env.host keys ['retries']"),
    ]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            HostSettings.from_dict(bad)
