"""LIMARL: SRM/ROLIM training, the retrain trigger, KL warm-up, oracle and decentralised acting."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from omegaconf import OmegaConf

from jlmarl import algos
from jlmarl.algos import limarl
from jlmarl.core.algo import Phase, UpdateContext
from jlmarl.core.engine import Engine, EngineConfig
from jlmarl.core.rollout import UniformRandomPolicy, run_episodes
from jlmarl.core.seed_cond import cond_any
from jlmarl.envs.matrix import THREE_STATE_PAYOFF, MatrixGame
from jlmarl.nets.agents import episode_inputs
from jlmarl.nets.gaussian import GaussianHead, kl_std_normal
from jlmarl.nets.latent import LatentAgent
from jlmarl.nets.recurrent import unroll

TINY = [
    "algo=limarl",
    "env=matrix_three_state",
    "batch_size=16",
    "algo.hidden_dim=16",
    "algo.mixing_embed_dim=8",
    "algo.hypernet_embed=8",
    "limarl.latent_dim=4",
    "limarl.srm_hidden=16",
    "limarl.rolim_hidden=16",
    "limarl.val_episodes=4",
    "limarl.monitor_episodes=4",
    "limarl.rep_updates=2",
    "limarl.kl_warmup=10",
]
ENV = MatrixGame("m3", THREE_STATE_PAYOFF, episode_limit=10)


def ctx(batch, phase: int, updates: int = 0, recent: int = 4) -> UpdateContext:
    """The clock of one update call, with the batch's last `recent` episodes as the
    buffer's newest (limarl.monitor_episodes=4 in TINY)."""
    newest = jax.tree.map(lambda x: x[-recent:], batch)
    zero = jnp.int32(0)
    return UpdateContext(zero, zero, jnp.int32(updates), jnp.int32(phase), newest)


def algo_cfg(make_cfg, *overrides):
    """The composed run config, resolved (algos.build takes it whole)."""
    return OmegaConf.to_container(make_cfg(*TINY, *overrides), resolve=True)


@pytest.fixture(scope="module")
def batch():
    b, _ = run_episodes(ENV, UniformRandomPolicy(), None, jax.random.PRNGKey(1), 16, 0, False)
    return b


def model_and_rep(make_cfg):
    cfg = algo_cfg(make_cfg)["limarl"]
    model = limarl.LatentModel(ENV.spec, cfg["latent_dim"], cfg["srm_hidden"], cfg["rolim_hidden"])
    return model, model.init(jax.random.PRNGKey(0))


def test_srm_loss_falls_on_a_fixed_batch(make_cfg, batch):
    model, rep = model_and_rep(make_cfg)
    opt = optax.adam(1e-2)
    srm = {"encoder": rep["encoder"], "decoder": rep["decoder"]}
    _, _, terms = jax.jit(lambda r, o, b, k: limarl.srm_steps(model, opt, 60, r, o, b, k, 0.0))(
        rep, opt.init(srm), batch, jax.random.PRNGKey(2)
    )
    first, last = float(terms[:5, 0].mean()), float(terms[-5:, 0].mean())
    assert last < 0.3 * first, (first, last)


def test_rolim_updates_leave_the_srm_bit_identical_and_alignment_pulls_mu_hat_to_mu(make_cfg, batch):
    model, rep = model_and_rep(make_cfg)
    opt = optax.adam(1e-2)
    weights = jnp.array([1.0, 0.0, 0.0])  # alignment only
    new, _, terms = jax.jit(lambda r, o, b, k: limarl.rolim_steps(model, opt, 80, r, o, b, k, weights))(
        rep, opt.init(rep["rolim"]), batch, jax.random.PRNGKey(3)
    )
    for part in ("encoder", "decoder"):
        for a, b in zip(jax.tree.leaves(rep[part]), jax.tree.leaves(new[part]), strict=True):
            np.testing.assert_array_equal(a, b)
    old_p, new_p = rep["rolim"]["params"], new["rolim"]["params"]
    assert not np.array_equal(old_p["mu"]["kernel"], new_p["mu"]["kernel"])
    assert not np.array_equal(old_p["gru"]["hn"]["kernel"], new_p["gru"]["hn"]["kernel"])
    # alignment alone gives the variance head no gradient
    np.testing.assert_array_equal(old_p["logvar"]["kernel"], new_p["logvar"]["kernel"])
    # The SRM's mu of the three matrix states is a fixed target; mu_hat must approach it.
    first, last = float(terms[0, 0]), float(terms[-1, 0])
    assert last < 0.1 * first, (first, last)
    # The first step's alignment term, by hand: the mean over real (step, agent) pairs of
    # ||mu_hat - mu||^2 at the initial parameters.
    t = batch.reward.shape[1]
    mu_hat, _ = model.infer(rep, episode_inputs(batch.obs, batch.actions, ENV.spec.n_actions))
    mu, _ = model.encode(rep, batch.state)
    per_pair = np.sum((np.asarray(mu_hat[:, :t]) - np.asarray(mu[:, :t, None])) ** 2, -1)  # [B, T, n]
    mask = np.asarray(batch.mask)[..., None].repeat(ENV.spec.n_agents, -1)
    np.testing.assert_allclose(terms[0, 0], per_pair[mask > 0].mean(), rtol=1e-5)


def test_train_decoder_moves_the_decoder_and_keeps_the_encoder(make_cfg, batch):
    """Table 4's TrainDecoder setting (benchmarks/limarl_digits.py): reconstruction
    trains ROLIM and the decoder; the encoder (the alignment target) stays frozen."""
    model, rep = model_and_rep(make_cfg)
    opt = optax.adam(1e-2)
    weights = jnp.array([0.0, 1.0, 0.0])  # reconstruction only
    new, _, _ = jax.jit(
        lambda r, o, b, k: limarl.rolim_steps(model, opt, 5, r, o, b, k, weights, train_decoder=True)
    )(rep, opt.init(limarl.rolim_trained_params(rep, True)), batch, jax.random.PRNGKey(3))
    for a, b in zip(jax.tree.leaves(rep["encoder"]), jax.tree.leaves(new["encoder"]), strict=True):
        np.testing.assert_array_equal(a, b)
    for part in ("decoder", "rolim"):
        pairs = zip(jax.tree.leaves(rep[part]), jax.tree.leaves(new[part]), strict=True)
        moved = [not np.array_equal(a, b) for a, b in pairs]
        assert any(moved), part


def test_kl_warmup_schedule_values():
    assert float(limarl.kl_weight(jnp.int32(0), 0.1, 5000)) == 0.0
    np.testing.assert_allclose(limarl.kl_weight(jnp.int32(2500), 0.1, 5000), 0.05)
    np.testing.assert_allclose(limarl.kl_weight(jnp.int32(5000), 0.1, 5000), 0.1)
    np.testing.assert_allclose(limarl.kl_weight(jnp.int32(10**6), 1.0, 5000), 1.0)
    np.testing.assert_allclose(limarl.kl_weight(jnp.int32(0), 0.5, 0), 0.5)
    base = {"lambda_align": 1.0, "lambda_rec": 2.0, "kl_beta": 0.3, "align": True, "rec": True, "kl": True}
    assert limarl.loss_weights(base) == (1.0, 2.0, 0.3)
    assert limarl.loss_weights({**base, "align": False, "rec": False, "kl": False}) == (0.0, 0.0, 0.0)


def test_kl_helper_matches_distrax():
    import distrax

    mu, logvar = jnp.array([[0.3, -1.0]]), jnp.array([[0.2, -0.7]])
    q = distrax.MultivariateNormalDiag(mu, jnp.exp(0.5 * logvar))
    p = distrax.MultivariateNormalDiag(jnp.zeros_like(mu), jnp.ones_like(mu))
    np.testing.assert_allclose(kl_std_normal(mu, logvar), q.kl_divergence(p), rtol=1e-5)


@pytest.fixture(scope="module")
def trigger_algo(tmp_path_factory):
    from jlmarl.config import load_config

    cfg = load_config(
        [
            *TINY,
            f"run_dir={tmp_path_factory.mktemp('t')}",
            "limarl.delta=0.1",
            "limarl.online_window=1",
            "limarl.kl=false",
            "limarl.rec=false",
            "limarl.pretrain_episodes=20",
        ]
    )
    algo = algos.build("limarl", ENV.spec, cfg)
    return algo, jax.jit(algo.update)


def test_retrain_fires_exactly_when_online_loss_exceeds_validation_mean_times_one_plus_delta(
    trigger_algo, batch
):
    delta = 0.1
    algo, update = trigger_algo
    ts = algo.init(jax.random.PRNGKey(0)).replace(updates=jnp.int32(100))  # past Phase I
    key = jax.random.PRNGKey(5)
    # The online loss (alignment only here) of this batch, measured with a validation mean of 0.
    _, m = update(ts.replace(val_terms=jnp.zeros(3)), batch, key, ctx(batch, 1, 100))
    online = float(m["rolim_online"])
    assert float(m["retrains"]) == 1.0 and float(m["rep_trained"]) == 1.0  # 0 * 1.1 < online
    for scale, fires in ((1.001, False), (0.999, True)):
        val = online / (1 + delta) * scale
        new, m = update(ts.replace(val_terms=jnp.array([val, 0.0, 0.0])), batch, key, ctx(batch, 1, 100))
        assert float(m["rolim_online"]) == online
        assert int(new.retrains) == int(fires) and float(m["rep_trained"]) == float(fires)
        # a retrain refreshes L_bar and empties the ring
        assert (int(new.online_count) == 0) == fires
        assert (float(new.val_terms[0]) != np.float32(val)) == fires


def test_a_retrain_starts_from_best_rep_bit_for_bit(trigger_algo, batch):
    """Whatever the current representation, a retrain's result depends only on best_rep."""
    algo, update = trigger_algo
    ts = algo.init(jax.random.PRNGKey(0)).replace(updates=jnp.int32(100), val_terms=jnp.zeros(3))
    best = algo.init(jax.random.PRNGKey(9)).rep  # a different "best" checkpoint
    key, c = jax.random.PRNGKey(5), ctx(batch, 1, 100)
    from_current, m1 = update(ts.replace(best_rep=best), batch, key, c)
    from_best, m2 = update(ts.replace(rep=best, best_rep=best), batch, key, c)
    assert float(m1["retrains"]) == float(m2["retrains"]) == 1.0  # val_terms 0: both fire
    for a, b in zip(jax.tree.leaves(from_current.rep), jax.tree.leaves(from_best.rep), strict=True):
        np.testing.assert_array_equal(a, b)
    # ... and it does start from best_rep, not from the current rep: in Phase I (no restore)
    # the same round from the current rep ends elsewhere.
    trained, _ = update(ts.replace(best_rep=best), batch, key, ctx(batch, 0, 0))
    assert not np.array_equal(
        trained.rep["rolim"]["params"]["mu"]["kernel"], from_best.rep["rolim"]["params"]["mu"]["kernel"]
    )


def test_the_online_loss_is_measured_on_the_newest_buffer_episodes(trigger_algo, batch):
    """Alignment only (kl=false, rec=false), window 1: rolim_online is, by hand, the mean
    over the recent episodes' real (step, agent) pairs of ||mu_hat - mu||^2, whatever
    the sampled batch."""
    algo, update = trigger_algo
    ts = algo.init(jax.random.PRNGKey(0))
    model = limarl.LatentModel(ENV.spec, 4, 16, 16)
    recent = jax.tree.map(lambda x: x[-4:], batch)
    t = batch.reward.shape[1]
    mu_hat, _ = model.infer(ts.rep, episode_inputs(recent.obs, recent.actions, ENV.spec.n_actions))
    mu, _ = model.encode(ts.rep, recent.state)
    per_pair = np.sum((np.asarray(mu_hat[:, :t]) - np.asarray(mu[:, :t, None])) ** 2, -1)
    mask = np.asarray(recent.mask)[..., None].repeat(ENV.spec.n_agents, -1)
    key = jax.random.PRNGKey(5)
    _, m = update(ts, batch, key, ctx(batch, 1, 100))
    np.testing.assert_allclose(float(m["rolim_online"]), per_pair[mask > 0].mean(), rtol=1e-5)
    other_batch = jax.tree.map(lambda x: x[::-1], batch)  # another sample, same newest episodes
    _, m2 = update(ts, other_batch, key, ctx(batch, 1, 100))
    assert float(m2["rolim_online"]) == float(m["rolim_online"])


def test_no_td_update_during_phase_one(trigger_algo, batch):
    algo, update = trigger_algo
    ts = algo.init(jax.random.PRNGKey(0))
    during, m = update(ts, batch, jax.random.PRNGKey(1), ctx(batch, 0, 0))
    for a, b in zip(
        jax.tree.leaves((ts.params, ts.opt_state)),
        jax.tree.leaves((during.params, during.opt_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert float(m["td_trained"]) == 0.0 and float(m["loss"]) == 0.0 and float(m["rep_trained"]) == 1.0
    after, m = update(ts.replace(val_terms=jnp.full(3, 1e20)), batch, jax.random.PRNGKey(1), ctx(batch, 1, 3))
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(ts.params), jax.tree.leaves(after.params), strict=True)
    ]
    assert any(moved) and float(m["td_trained"]) == 1.0 and float(m["loss"]) > 0.0


def test_kl_weight_counts_representation_steps_and_reaches_beta_in_phase_one(make_cfg, batch):
    """rep_updates=2 steps per Phase I call, kl_warmup=6 steps, beta=0.5: after call k the
    weight is 0.5 min(1, 2k / 6), so beta is reached within the 4 calls of Phase I."""
    cfg = algo_cfg(make_cfg, "limarl.kl_warmup=6", "limarl.kl_beta=0.5", "limarl.pretrain_episodes=32")
    algo = algos.build("limarl", ENV.spec, cfg)
    update = jax.jit(algo.update)
    ts = algo.init(jax.random.PRNGKey(0))
    seen = []
    for k in range(5):  # ceil(32 / 8) = 4 Phase I calls, then one of Phase II
        ts, m = update(
            ts.replace(val_terms=jnp.full(3, 1e20)), batch, jax.random.PRNGKey(k), ctx(batch, int(k >= 4), k)
        )
        seen.append(float(m["kl_weight"]))
    np.testing.assert_allclose(seen, [0.0, 0.5 / 3, 1.0 / 3, 0.5, 0.5], rtol=1e-6)
    assert int(ts.rep_steps) == 4


def test_a_kl_warmup_longer_than_phase_one_is_refused(make_cfg):
    from jlmarl.config import ConfigError

    # 200 episodes / 8 per update = 25 calls x 2 steps = 50 representation steps
    with pytest.raises(
        ConfigError, match="limarl.kl_warmup=51 representation steps is longer than Phase I's 50"
    ):
        make_cfg(*TINY, "limarl.kl_warmup=51")
    make_cfg(*TINY, "limarl.kl_warmup=50")
    make_cfg(*TINY, "limarl.kl_warmup=51", "limarl.kl=false")


def test_phase_one_covers_the_first_pretrain_episodes_then_stops(trigger_algo, batch):
    algo, update = trigger_algo
    assert algo.phases == (Phase("representation", 20),)
    engine = Engine(ENV, algo, EngineConfig(8, 64, 8, 1, 200, 1, episodes_per_update=8))
    # ceil(20 episodes / 8 per update) = 3 update calls of Phase I, then main training
    assert engine.phase_ends() == [3]
    phases = [int(engine.phase_at(jnp.int32(u))) for u in range(5)]
    assert phases == [0, 0, 0, 1, 1]
    ts = algo.init(jax.random.PRNGKey(0))
    trained = []
    for i in range(4):
        # a huge validation mean: nothing but Phase I can train the representation
        c = ctx(batch, phases[i], i)
        ts, m = update(ts.replace(val_terms=jnp.full(3, 1e20)), batch, jax.random.PRNGKey(i), c)
        trained.append(float(m["rep_trained"]))
    assert trained == [1.0, 1.0, 1.0, 0.0]
    assert int(ts.retrains) == 0 and int(ts.rep_steps) == 3
    assert np.isfinite(float(m["rolim_val"]))


def test_pre_train_only_never_fires():
    assert not bool(limarl.retrain_due(jnp.float32(1e30), jnp.float32(1.0), math.inf))
    assert not bool(limarl.retrain_due(jnp.float32(1e30), jnp.float32(0.0), math.inf))
    assert bool(limarl.retrain_due(jnp.float32(1.2), jnp.float32(1.0), 0.1))
    assert not bool(limarl.retrain_due(jnp.float32(1.1), jnp.float32(1.0), 0.1))


def test_oracle_mode_feeds_the_srm_mean_of_the_state(make_cfg, batch):
    cfg = algo_cfg(make_cfg, "limarl.oracle=true")
    algo = algos.build("limarl", ENV.spec, cfg)
    assert algo.act_uses_state
    ts = algo.init(jax.random.PRNGKey(0))
    d = cfg["limarl"]["latent_dim"]
    encoder = GaussianHead(d, (cfg["limarl"]["srm_hidden"],) * 2)
    agent = LatentAgent(cfg["algo"]["hidden_dim"], ENV.spec.n_actions, d)
    mu, _ = encoder.apply(ts.rep["encoder"], batch.state)  # [B, T+1, d]
    inputs = episode_inputs(batch.obs, batch.actions, ENV.spec.n_actions)
    latent = jnp.broadcast_to(mu[:, :, None], (*inputs.shape[:3], d))
    expected = unroll(agent, ts.params["agent"], jnp.concatenate([inputs, latent], -1))[:, :-1]
    _, q = algo.joint_q(ts, batch)
    np.testing.assert_allclose(q, expected, rtol=1e-5, atol=1e-6)


class ScrambledState:
    """The same env, but the global state it returns is replaced by noise."""

    def __init__(self, env, seed):
        self.env, self.spec, self.seed = env, env.spec, seed

    def _scramble(self, key, ts):
        noise = jax.random.normal(jax.random.fold_in(key, self.seed), ts.state.shape)
        return ts.replace(state=noise * 10.0)

    def reset(self, key):
        s, ts = self.env.reset(key)
        return s, self._scramble(key, ts)

    def step(self, key, s, actions):
        s, ts = self.env.step(key, s, actions)
        return s, self._scramble(key, ts)


@pytest.mark.parametrize("oracle", [False, True])
def test_acting_is_decentralised_changing_the_state_changes_no_action(make_cfg, oracle):
    algo = algos.build("limarl", ENV.spec, algo_cfg(make_cfg, f"limarl.oracle={str(oracle).lower()}"))
    ts = algo.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(7)
    rollout = jax.jit(
        lambda env, greedy: run_episodes(env, algo, ts, key, 32, 0, greedy)[0], static_argnums=(0, 1)
    )
    # greedy: exploration at env step 0 is uniform and would hide any dependence
    base = rollout(ENV, True)
    other = rollout(ScrambledState(ENV, 1), True)
    assert not np.array_equal(base.state, other.state)
    if oracle:  # the privileged upper bound does read the state: the test can fail
        assert not np.array_equal(base.actions, other.actions)
    else:
        np.testing.assert_array_equal(base.actions, other.actions)


def test_cond_any_under_vmap_keeps_each_elements_own_result():
    def fn(s, k, scale):
        return {"a": s["a"] * scale + jax.random.uniform(k), "n": s["n"] + 1}

    pred = jnp.array([True, False, True])
    state = {"a": jnp.array([1.0, 2.0, 3.0]), "n": jnp.zeros(3, jnp.int32)}
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    out = jax.jit(jax.vmap(lambda p, s, k: cond_any(p, fn, s, k, 2.0)))(pred, state, keys)
    for i in range(3):
        lone = cond_any(pred[i], fn, jax.tree.map(lambda x, i=i: x[i], state), keys[i], 2.0)
        np.testing.assert_allclose(out["a"][i], lone["a"], rtol=1e-6)
        assert int(out["n"][i]) == int(lone["n"]) == int(pred[i])


def test_config_errors_name_the_key(make_cfg):
    from jlmarl.config import ConfigError

    with pytest.raises(ConfigError, match="limarl.val_episodes=16 must be below batch_size=8"):
        make_cfg("algo=limarl", "batch_size=8")
    with pytest.raises(ConfigError, match="limarl.align must be true or false"):
        make_cfg("algo=limarl", "limarl.align=3")
    with pytest.raises(ConfigError, match="limarl.latent_dim must be an integer >= 1"):
        make_cfg("algo=limarl", "limarl.latent_dim=0")
