"""Belief-I2Q, Rec-I2Q, Rec-Hyst-IQL and the offline belief model (seed 002).

Most tests share one tiny belief model, pre-trained once through `pretrain` on the
three-state cycle with its whole state declared hidden, and one compiled program
per learner; XLA's optimisations are off in this module (compile time dominates
these small programs; every assertion compares numbers from the same setting).
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jlmarl.algos import hysteretic, i2q
from jlmarl.algos.belief_model import collect_episodes, evaluate_belief, load_belief
from jlmarl.algos.hysteretic import hysteretic_td_loss, hysteretic_weights
from jlmarl.algos.i2q import I2QNets, episode_transitions, i2q_losses, sample_transitions
from jlmarl.config import ConfigError
from jlmarl.core.algo import AlgoConfigError
from jlmarl.envs.matrix import THREE_STATE_PAYOFF, MatrixGame
from jlmarl.pretrain_belief import pretrain
from jlmarl.train import build as train_build
from jlmarl.train import run
from tests.helpers import update_ctx

ALGOS = ("belief_i2q", "rec_i2q", "rec_hyst_iql")
TINY_ALGO = {
    "gamma": 0.99,
    "lr": 1e-3,
    "tau": 0.005,
    "lambda_f": 0.1,
    "qss_context": False,
    "f_error": "mean",
    "transitions": 0,
    "hidden_dim": 8,
    "grad_norm_clip": 10.0,
    "epsilon_start": 0.6,
    "epsilon_finish": 0.05,
    "epsilon_anneal_steps": 1000,
    "td_lambda": 0.0,
    "hysteresis": 0.2,
}
PHASE_BELIEF = dict(
    episodes=256, eval_episodes=256, train_steps=300, batch_size=32, hidden_dim=16, z_dim=2, mlp_dim=16
)


def phase_game() -> MatrixGame:
    """The three-state cycle with its whole one-hot state declared hidden: the agents see
    only whether it is S3, so two observations pin the phase down."""
    env = MatrixGame("phase", THREE_STATE_PAYOFF, episode_limit=5)
    env.spec = dataclasses.replace(env.spec, hidden_dims=(0, 1, 2))
    return env


ENV = phase_game()


@pytest.fixture(scope="module", autouse=True)
def fast_compile():
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


@pytest.fixture(scope="module")
def phase_belief(tmp_path_factory):
    """(checkpoint path, metrics) of a belief model pre-trained on ENV by `pretrain`."""
    from jlmarl.config import load_config

    path = tmp_path_factory.mktemp("belief") / "phase"
    overrides = ["algo=belief_i2q", "env=oracle", f"belief_i2q.checkpoint={path}"]
    overrides += [f"belief_i2q.{k}={v}" for k, v in PHASE_BELIEF.items()]
    return path, pretrain(load_config(overrides), log_every=0, env=ENV)


@pytest.fixture(scope="module")
def learners(phase_belief):
    """name -> (algo, init, act, update), built and jitted once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            if name == "rec_hyst_iql":
                algo = hysteretic.build(ENV.spec, TINY_ALGO)
            elif name == "rec_i2q":
                algo = i2q.build(ENV.spec, TINY_ALGO, "history", name=name)
            else:
                belief = {"checkpoint": str(phase_belief[0]), "samples": 2, "temperature": 0.5}
                algo = i2q.build(ENV.spec, TINY_ALGO, "belief", name=name, method=belief)
            cache[name] = (
                algo,
                jax.jit(algo.init),
                jax.jit(algo.act, static_argnums=6),
                jax.jit(algo.update),
            )
        return cache[name]

    return get


def random_batch(n_episodes=8, seed=1):
    return collect_episodes(ENV, jax.random.PRNGKey(seed), n_episodes)


def test_pretrained_belief_infers_the_hidden_phase_from_the_history(phase_belief):
    path, metrics = phase_belief
    err = np.array(metrics["belief_error_by_t"])
    assert err.shape == (6,) and metrics["count_by_t"] == [512.0] * 6  # 256 episodes x 2 agents
    # t = 0: S1 and S2 look alike (the best guess errs by 1/3 on average); from t = 1 the two
    # observations seen pin the phase down.
    assert 0.2 < err[0] < 0.6
    assert err[1:].max() < 0.1, err
    assert min(metrics["kl_by_t"]) >= 0 and metrics["prior_mean_error"] > 0.6
    meta = json.loads((path / "belief.json").read_text())
    assert meta["hidden_dims"] == [0, 1, 2] and meta["model"] == {"hidden_dim": 16, "z_dim": 2, "mlp_dim": 16}
    # the restored model reproduces the saved metrics (same key as pretrain's evaluation)
    model, params, _ = load_belief(path, ENV.spec)
    eval_key = jax.random.split(jax.random.PRNGKey(0), 3)[2]
    fresh = collect_episodes(ENV, jax.random.split(jax.random.PRNGKey(0), 3)[1], 256)
    again = evaluate_belief(model, params, ENV.spec, fresh, eval_key, 2, 0.5)
    np.testing.assert_allclose(again["belief_error"], err, rtol=1e-5)
    with pytest.raises(AlgoConfigError, match="was trained for env phase"):
        load_belief(path, dataclasses.replace(ENV.spec, hidden_dims=(0, 1)))


def test_belief_model_stays_bit_identical_through_rl(phase_belief, learners):
    _, saved, _ = load_belief(phase_belief[0], ENV.spec)
    algo, init, _, update = learners("belief_i2q")
    ts = init(jax.random.PRNGKey(0))
    before = jax.tree.map(np.array, ts.params)
    for i in range(3):
        ts, metrics = update(ts, random_batch(seed=i), jax.random.PRNGKey(i), update_ctx())
    assert int(ts.updates) == 3 and np.isfinite(metrics["loss"])
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(ts.belief_params), strict=True):
        np.testing.assert_array_equal(a, b)  # the pre-trained model, every bit
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), before, ts.params)
    assert all(jax.tree.leaves(moved))  # while the I2Q networks learned


def test_f_loss_moves_only_f_and_pushes_it_toward_higher_qss():
    nets = I2QNets(obs_dim=1, n_actions=3, hidden_dim=8)
    params = jax.jit(nets.init, static_argnums=(1, 2))(jax.random.PRNGKey(0), 2, 3)
    batch = random_batch()
    ctx = jax.random.normal(jax.random.PRNGKey(2), (*batch.obs.shape[:3], 3))
    tr = episode_transitions(batch, ctx)

    @jax.jit
    def f_loss_grad(p, lambda_f):
        return jax.grad(lambda q: i2q_losses(nets, q, params["qss"], tr, 0.99, lambda_f)[0]["f"].sum())(p)

    g = f_loss_grad(params, 1.0)
    assert float(optax.tree.norm(g["f"])) > 0
    assert float(optax.tree.norm(g["qss"])) == 0 and float(optax.tree.norm(g["q"])) == 0

    # The -lambda_f Qss(o, f) term: a small step against its gradient raises Qss(o, f(o, c, a)).
    climb = jax.tree.map(lambda a, b: a - b, g["f"], f_loss_grad(params, 0.0)["f"])
    stepped = jax.tree.map(lambda p, d: p - 1e-2 * d, params["f"], climb)
    o, c = batch.obs[:, :-1], ctx[:, :-1]

    @jax.jit
    def total_qss(f_params):
        f = nets.f_predict(f_params, o, c, batch.actions)
        return (nets.qss_value(params["qss"], o, c, f) * batch.mask[..., None]).sum()

    assert float(total_qss(stepped)) > float(total_qss(params["f"]))


def test_f_error_is_averaged_over_observation_dims():
    """f's parameters zeroed: f(o, c, a) = 0, so with lambda_f = 0 L_f is, by hand, the mean
    over real steps of mean_k o'_k^2 (the paper's MSELoss); `sum` is obs_dim = 3 times that."""
    nets = I2QNets(obs_dim=3, n_actions=3, hidden_dim=8)
    params = nets.init(jax.random.PRNGKey(0), 2, 1)
    params["f"] = jax.tree.map(jnp.zeros_like, params["f"])
    obs = np.arange(2 * 3 * 2 * 3, dtype=np.float32).reshape(2, 3, 2, 3) / 10.0  # [B=2, T+1=3, n=2, 3]
    mask = np.array([[1.0, 1.0], [1.0, 0.0]], np.float32)  # 3 real steps
    tr = episode_transitions(
        random_batch(2).replace(
            obs=jnp.asarray(obs),
            mask=jnp.asarray(mask),
            actions=jnp.zeros((2, 2, 2), jnp.int32),
            reward=jnp.zeros((2, 2)),
            terminated=jnp.zeros((2, 2), bool),
            avail=jnp.ones((2, 3, 2, 3), bool),
        ),
        jnp.zeros((2, 3, 2, 1)),
    )
    next_obs = obs[:, 1:]  # [2, 2, 2, 3]
    real = mask > 0
    by_hand = (next_obs[real] ** 2).mean(-1).mean(0)  # [n]: mean over real steps of mean over dims
    losses, _ = i2q_losses(nets, params, params["qss"], tr, 0.99, 0.0)
    np.testing.assert_allclose(losses["f"], by_hand, rtol=1e-6)
    summed, _ = i2q_losses(nets, params, params["qss"], tr, 0.99, 0.0, f_error="sum")
    np.testing.assert_allclose(summed["f"], 3 * by_hand, rtol=1e-6)


def test_drawn_transitions_are_real_steps_with_their_whole_episode_context():
    batch = random_batch(4)
    b, t = batch.mask.shape
    # a context that names its position: ctx[e, s] = 100 e + s at every agent
    code = (100.0 * jnp.arange(b)[:, None] + jnp.arange(t + 1)[None, :])[..., None, None]
    ctx = jnp.broadcast_to(code, (b, t + 1, 2, 1))
    batch = batch.replace(mask=batch.mask.at[:, 3:].set(False))  # 3 real steps per episode
    tr = sample_transitions(jax.random.PRNGKey(0), batch, ctx, 1200)
    e, s = np.divmod(np.asarray(tr.ctx[:, 0, 0]).astype(int), 100)
    assert s.max() <= 2  # only real steps are drawn
    np.testing.assert_array_equal(np.asarray(tr.ctx_next[:, 0, 0]), 100 * e + s + 1)  # c' is at t + 1
    np.testing.assert_array_equal(np.asarray(tr.obs), np.asarray(batch.obs)[e, s])
    counts = np.bincount(e * 3 + s, minlength=12)
    assert counts.min() > 100 - 4 * 10 and counts.max() < 100 + 4 * 10  # uniform: 1200 / 12 each, sd ~9.6


def test_the_belief_is_the_decoders_mean_and_log_variance(phase_belief):
    from jlmarl.nets.belief import BeliefModel, gaussian_nll, sample_belief

    # -log N(x; mu, e^logvar) without the constant, by hand: x = (1, 2), mu = 0, var = (1, 4)
    np.testing.assert_allclose(
        gaussian_nll(jnp.array([1.0, 2.0]), jnp.zeros(2), jnp.log(jnp.array([1.0, 4.0]))),
        0.5 * (1.0 + 0.0 + 4.0 / 4.0 + np.log(4.0)),
        rtol=1e-6,
    )
    model, params, _ = load_belief(phase_belief[0], ENV.spec)
    h = jax.random.normal(jax.random.PRNGKey(0), (5, model.hidden_dim))
    # temperature 0: z is the prior's mean, so the belief is the decoding of it, both heads
    mu_p, _ = model.apply(params, h, method=BeliefModel.prior)
    mean, logvar = model.apply(params, h, mu_p, method=BeliefModel.decode)
    belief = sample_belief(model, params, h, jax.random.PRNGKey(1), 2, 0.0)
    assert belief.shape == (5, 2 * 3)
    np.testing.assert_allclose(belief, jnp.concatenate([mean, logvar], -1), rtol=1e-6)
    assert float(jnp.abs(logvar).max()) > 0  # the variance head is trained, not a constant 0


def test_a_belief_checkpoint_from_before_the_variance_head_is_refused(phase_belief, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(phase_belief[0], old)
    meta = json.loads((old / "belief.json").read_text())
    del meta["format"]
    (old / "belief.json").write_text(json.dumps(meta))
    with pytest.raises(AlgoConfigError, match="format-1 belief model .* pre-train it again"):
        load_belief(old, ENV.spec)


def test_qss_reads_o_and_o_next_by_default_for_both_methods(make_cfg):
    for name in ("belief_i2q", "rec_i2q"):
        cfg = make_cfg(f"algo={name}", "env=oracle")
        assert cfg.algo.qss_context is False and cfg.algo.f_error == "mean" and cfg.algo.transitions == 0
    assert I2QNets(obs_dim=2, n_actions=3, hidden_dim=8).qss_context is False


@pytest.mark.parametrize("qss_context", [True, False])
def test_qss_reads_the_context_only_when_asked(qss_context):
    nets = I2QNets(obs_dim=2, n_actions=3, hidden_dim=8, qss_context=qss_context)
    params = nets.init(jax.random.PRNGKey(0), 2, 3)
    o, o_next = jnp.ones((5, 2, 2)), jnp.zeros((5, 2, 2))
    c = jax.random.normal(jax.random.PRNGKey(1), (5, 2, 3))
    moved = nets.qss_value(params["qss"], o, c, o_next) - nets.qss_value(params["qss"], o, c + 1.0, o_next)
    assert bool(jnp.all(moved != 0)) == qss_context and bool(jnp.any(moved != 0)) == qss_context


def test_hysteresis_scales_only_negative_td_errors():
    weights = hysteretic_weights(jnp.array([-2.0, -1e-6, 0.0, 3.0]), 0.25)
    np.testing.assert_array_equal(weights, [0.25, 0.25, 1.0, 1.0])
    # one agent, three steps: TD errors (target - Q) = +2, -2, -4; the last step is padding
    q = jnp.array([[[1.0], [3.0], [0.0]]])
    targets = jnp.array([[[3.0], [1.0], [-4.0]]])
    mask = jnp.array([[[1.0], [1.0], [0.0]]])
    np.testing.assert_allclose(hysteretic_td_loss(q, targets, mask, 0.25), [(4.0 + 0.25 * 4.0) / 2])
    grad = jax.grad(lambda x: hysteretic_td_loss(x, targets, mask, 0.25).sum())(q)
    # d/dQ of w (t - Q)^2 / 2 = -w (t - Q): the positive error's pull is untouched, the negative one's x0.25
    np.testing.assert_allclose(grad[0, :, 0], [-2.0, 0.25 * 2.0, 0.0])
    plain = jax.grad(lambda x: hysteretic_td_loss(x, targets, mask, 1.0).sum())(q)
    np.testing.assert_allclose(plain[0, :, 0], [-2.0, 2.0, 0.0])


@pytest.mark.parametrize("name", ALGOS)
def test_agents_act_and_learn_only_from_their_own_histories(name, learners):
    algo, init, act, update = learners(name)
    ts = init(jax.random.PRNGKey(0))
    obs_a = jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (5, 8, 2, 1)).astype(jnp.float32)
    obs_b = obs_a.at[:, :, 1].set(jax.random.normal(jax.random.PRNGKey(2), (5, 8, 1)))  # agent 1 differs
    avail = jnp.ones((8, 2, 3), bool)
    actor_a = actor_b = algo.init_actor(8)
    for t in range(5):
        key = jax.random.PRNGKey(10 + t)
        act_a, actor_a = act(ts, actor_a, obs_a[t], avail, key, jnp.int32(0), False)
        act_b, actor_b = act(ts, actor_b, obs_b[t], avail, key, jnp.int32(0), False)
        np.testing.assert_array_equal(act_a[:, 0], act_b[:, 0])
        np.testing.assert_array_equal(actor_a.hidden[:, 0], actor_b.hidden[:, 0])
    assert not np.allclose(actor_a.hidden[:, 1], actor_b.hidden[:, 1])  # the test can see a difference

    # Training is decentralised too: agent 0's update ignores agent 1's observations.
    batch = random_batch()
    other = batch.replace(obs=batch.obs.at[:, :, 1].add(1.0))
    new_a, _ = update(ts, batch, jax.random.PRNGKey(3), update_ctx())
    new_b, _ = update(ts, other, jax.random.PRNGKey(3), update_ctx())
    pairs = list(zip(jax.tree.leaves(new_a.params), jax.tree.leaves(new_b.params), strict=True))
    for a, b in pairs:
        np.testing.assert_allclose(a[0], b[0], rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(a[1], b[1]) for a, b in pairs)


ORACLE_TINY = ["algo=belief_i2q", "env=oracle", "env.episode_limit=6", "algo.hidden_dim=8"]
PRETRAIN_TINY = [
    f"belief_i2q.{k}={v}"
    for k, v in dict(
        episodes=16, eval_episodes=16, train_steps=4, batch_size=4, hidden_dim=8, z_dim=2, mlp_dim=8
    ).items()
]


def test_config_and_checkpoint_errors_name_the_fix(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="env=matrix_three_state declares no hidden state"):
        train_build(make_cfg("algo=belief_i2q", "env=matrix_three_state"))
    with pytest.raises(ConfigError, match="algo.hysteresis"):
        make_cfg("algo=rec_hyst_iql", "env=matrix_three_state", "algo.hysteresis=1.5")
    make_cfg("algo=rec_i2q", "env=matrix_three_state")  # the recurrent baselines need no hidden state
    missing = make_cfg(*ORACLE_TINY, f"belief_i2q.checkpoint={tmp_path / 'none'}")
    with pytest.raises(
        ConfigError, match="holds no belief model; pre-train one with `python -m jlmarl.pretrain"
    ):
        train_build(missing)


def test_random_start_data_needs_an_env_with_that_option(make_cfg, tmp_path):
    ckpt = f"belief_i2q.checkpoint={tmp_path / 'b'}"
    with pytest.raises(
        ConfigError, match="env=honeycomb has no random_start option; set belief_i2q.random_start"
    ):
        pretrain(make_cfg("algo=belief_i2q", "env=honeycomb", "belief_i2q.random_start=true", ckpt))
    assert not (tmp_path / "b").exists()


def test_pretrain_refuses_to_overwrite_a_model(make_cfg, phase_belief):
    with pytest.raises(ConfigError, match="already holds a belief model"):
        pretrain(make_cfg(*ORACLE_TINY, f"belief_i2q.checkpoint={phase_belief[0]}"))


@pytest.mark.slow
def test_pretrain_then_train_on_oracle_end_to_end(make_cfg, tmp_path):
    ckpt = f"belief_i2q.checkpoint={tmp_path / 'belief'}"
    metrics = pretrain(make_cfg(*ORACLE_TINY, *PRETRAIN_TINY, ckpt, run_name="pre"), log_every=0)
    assert len(metrics["belief_error_by_t"]) == 7
    engine = train_build(make_cfg(*ORACLE_TINY, ckpt, run_name="b"))
    _, saved, _ = load_belief(tmp_path / "belief", engine.env.spec)
    frozen = jax.jit(engine.algo.init)(jax.random.PRNGKey(0)).belief_params
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(frozen), strict=True):
        np.testing.assert_array_equal(a, b)
    engine_keys = ["num_envs=8", "batch_size=8", "buffer_size=32", "test_interval=48", "test_episodes=2"]
    summary = run(make_cfg(*ORACLE_TINY, ckpt, "total_steps=96", *engine_keys, run_name="rl"))
    assert summary["seeds"][0]["env_steps"] >= 96 and np.isfinite(summary["seeds"][0]["loss_f"])
