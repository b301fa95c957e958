"""MMSA: the normalisers and losses by hand, where each loss's gradient goes, decentralised
acting, imagination shapes, every variant's update, the frozen encoders' refresh, the CLI."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf
from test_cli import train

from jlmarl import algos
from jlmarl.algos import mmsa
from jlmarl.core.algo import AlgoConfigError
from jlmarl.core.rollout import UniformRandomPolicy, run_episodes
from jlmarl.envs.matrix import THREE_STATE_PAYOFF, MatrixGame
from jlmarl.nets.agents import episode_inputs
from jlmarl.nets.gaussian import kl_diag
from jlmarl.nets.recurrent import unroll
from jlmarl.nets.sale import SaleEncoder, avg_l1_norm, layer_norm, normalizer, sale_features_at
from jlmarl.nets.world_model import MmsaWorldModel
from tests.helpers import update_ctx

ENV = MatrixGame("m3", THREE_STATE_PAYOFF, episode_limit=10)
TINY = [
    "algo=mmsa",
    "env=matrix_three_state",
    "algo.hidden_dim=8",
    "algo.mixing_embed_dim=4",
    "algo.hypernet_embed=4",
    "mmsa.latent_dim=2",
    "mmsa.obs_embed_dim=2",
    "mmsa.sale_hidden=8",
    "mmsa.model_hidden=8",
]


def run_cfg(make_cfg, *overrides):
    return OmegaConf.to_container(make_cfg(*TINY, *overrides), resolve=True)


@pytest.fixture(scope="module")
def batch():
    collect = jax.jit(lambda k: run_episodes(ENV, UniformRandomPolicy(), None, k, 6, 0, False)[0])
    return collect(jax.random.PRNGKey(1))


@pytest.fixture(scope="module")
def default():
    """The default variant with tiny networks: (nets, algo, train state)."""
    cfg = mmsa_cfg()
    algo = algos.build("mmsa", ENV.spec, cfg)
    return mmsa.make_nets(ENV.spec, *_sections(cfg)), algo, jax.jit(algo.init)(jax.random.PRNGKey(0))


# ---------------------------------------------------------------- by hand


def test_normalisers_by_hand():
    np.testing.assert_allclose(avg_l1_norm(jnp.array([2.0, -4.0, 6.0])), [0.5, -1.0, 1.5], rtol=1e-6)
    # per row over the last axis; an all-zero row divides by the 1e-8 floor and stays 0
    out = avg_l1_norm(jnp.array([[1.0, 3.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.5, 1.5], [0.0, 0.0]], rtol=1e-6)
    # [1, 2, 3]: mean 2, variance 2/3
    np.testing.assert_allclose(
        layer_norm(jnp.array([1.0, 2.0, 3.0])), np.array([-1, 0, 1]) / np.sqrt(2 / 3 + 1e-6), rtol=1e-5
    )
    np.testing.assert_array_equal(normalizer("none")(jnp.array([5.0, -1.0])), [5.0, -1.0])
    with pytest.raises(ValueError, match="mmsa.normalizer must be one of avg_l1, layer_norm, none"):
        normalizer("batch")


def test_sale_encoders_start_as_pytorch_layers_so_a_zero_observation_is_not_singular():
    # TD7/MMSA's encoders are PyTorch Linear layers: weights and biases uniform in
    # +-1/sqrt(fan_in). With Flax's zero biases, f(0) = 0 exactly and AvgL1Norm's gradient
    # is scaled by 1/1e-8 (a SALE gradient norm of 4e7 on the matrix game's zero observations).
    enc = SaleEncoder(embed_dim=4, hidden=16)
    params = enc.init(jax.random.key(0), jnp.zeros((1, 3)), jnp.zeros((1, 2)))["params"]
    for layer, fan_in in (("Dense_0", 3), ("Dense_1", 16), ("Dense_2", 16)):
        for kind in ("kernel", "bias"):
            w = np.asarray(params["f"][layer][kind])
            assert np.abs(w).max() <= 1 / np.sqrt(fan_in) and np.abs(w).min() > 0, (layer, kind)
    grads = jax.grad(
        lambda p: enc.apply({"params": p}, jnp.zeros((1, 3)), method=SaleEncoder.embed_state).sum()
    )(params)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)) < 1e3


def test_sale_loss_by_hand_and_it_pulls_the_prediction_toward_the_frozen_next_embedding():
    zsa = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    nxt = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    mask = jnp.array([True, False])  # the second step is padding
    np.testing.assert_allclose(mmsa.sale_loss(zsa, nxt, mask), (1 + 4) / 2, rtol=1e-6)
    g_pred, g_target = jax.grad(mmsa.sale_loss, argnums=(0, 1))(zsa, nxt, mask)
    np.testing.assert_allclose(g_pred, [[1.0, 2.0], [0.0, 0.0]], rtol=1e-6)  # 2 (zsa - nxt) / 2
    np.testing.assert_array_equal(g_target, 0.0)

    # Through real encoders: the gradient reaches f and g only through g(f(o), a) ...
    enc = SaleEncoder(embed_dim=3, hidden=8)
    o, o_next = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 4))
    a = jax.nn.one_hot(jnp.arange(5) % 2, 2)
    params = enc.init(jax.random.PRNGKey(1), o, a)

    def loss(p, p_target):
        zs, zsa = enc.apply(p, o, a)
        return mmsa.sale_loss(
            zsa, enc.apply(p_target, o_next, method=SaleEncoder.embed_state), jnp.ones(5, bool)
        )

    @jax.jit
    def check(p):
        both = jax.grad(lambda q: loss(q, q))(p)
        prediction_only = jax.grad(loss)(p, p)
        stepped = jax.tree.map(lambda x, g: x - 0.01 * g, p, both)
        return both, prediction_only, loss(p, p), loss(stepped, p)

    both, prediction_only, before, after = check(params)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9), both, prediction_only)
    # ... and a small step along it brings the prediction closer to the (fixed) next embedding
    assert float(after) < float(before)


def test_kl_terms_balance_the_posterior_and_prior_gradients():
    """q = N(1, 1), p = N(0.5, 1) in one dim: KL(q || p) = 0.125 and KL(p || N(0, 1)) = 0.125;
    dKL(q||p)/dmu_q = 0.5, dKL(q||p)/dmu_p = -0.5, dKL(p||N)/dmu_p = 0.5. A padded second
    step (mask False) holds garbage and must not count."""
    mu_q, mu_p, zero = jnp.array([[1.0], [9.0]]), jnp.array([[0.5], [-9.0]]), jnp.zeros((2, 1))
    mask = jnp.array([True, False])

    def total(mq, mp, balance):
        prior, post = mmsa.kl_losses((mq, zero), (mp, zero), mask, balance, alpha=0.8)
        return prior + post, (prior, post)

    for balance, grad_q, grad_p in ((True, 0.8 * 0.5, 0.5 - 0.2 * 0.5), (False, 0.5, 0.5 - 0.5)):
        (_, (prior, post)), grads = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
            mu_q, mu_p, balance
        )
        np.testing.assert_allclose([prior, post], [0.125, 0.125], rtol=1e-6)
        np.testing.assert_allclose(grads[0], [[grad_q], [0.0]], atol=1e-7)
        np.testing.assert_allclose(grads[1], [[grad_p], [0.0]], atol=1e-7)
    np.testing.assert_allclose(kl_diag(mu_q[:1], zero[:1], mu_p[:1], zero[:1]), [0.125], rtol=1e-6)
    # free bits: both KLs are 0.125; above 0.125 they send no gradient, below it the same as
    # without; the values stay the plain KLs either way
    for free, scale in ((0.2, 0.0), (0.1, 1.0)):
        (_, values), grads = jax.value_and_grad(
            lambda mq, mp, f=free: (
                sum(v := mmsa.kl_losses((mq, zero), (mp, zero), mask, True, 0.8, free_nats=f)),
                v,
            ),
            argnums=(0, 1),
            has_aux=True,
        )(mu_q, mu_p)
        np.testing.assert_allclose(values, [0.125, 0.125], rtol=1e-6)
        np.testing.assert_allclose(grads[0], [[scale * 0.8 * 0.5], [0.0]], atol=1e-7)
        np.testing.assert_allclose(grads[1], [[scale * (0.5 - 0.2 * 0.5)], [0.0]], atol=1e-7)


def test_by_default_kl_balancing_moves_the_prior_faster_than_the_posterior(default):
    """The paper's text and its citation (DreamerV2): the prior matures faster than the
    posterior is regularised. q = N(1, 1), p = N(0, 1): d KL(q || p) / d mu_q = 1 = -d / d mu_p;
    balancing scales the posterior's side by alpha, the prior's by 1 - alpha (Table 6's 0.8
    taken as the prior's weight)."""
    nets = default[0]
    zero, mask = jnp.zeros((1, 1)), jnp.array([True])
    grad_q, grad_p = jax.grad(
        lambda mq, mp: mmsa.kl_losses((mq, zero), (mp, zero), mask, True, nets.kl_alpha)[1],
        argnums=(0, 1),
    )(jnp.ones((1, 1)), zero)
    np.testing.assert_allclose(grad_q, [[0.2]], rtol=1e-6)
    np.testing.assert_allclose(grad_p, [[-0.8]], rtol=1e-6)


def test_policy_loss_by_hand_over_available_actions():
    logits = jnp.array([[[0.0, np.log(3.0), 0.0], [5.0, 0.0, 0.0]]])  # [1 step, 2 agents, 3 actions]
    avail = jnp.array([[[True, True, False], [False, True, True]]])
    greedy = jnp.array([[1, 2]])
    loss, agree = mmsa.policy_loss(logits, greedy, avail, jnp.array([True]))
    # agent 0: softmax over (0, log 3) -> 0.75 on action 1; agent 1: action 0 is unavailable,
    # (0, 0) -> 0.5 on action 2
    np.testing.assert_allclose(loss, (-np.log(0.75) - np.log(0.5)) / 2, rtol=1e-6)
    # agent 0's likeliest available action is 1 (= greedy); agent 1's is 1 (ties go to the first)
    np.testing.assert_allclose(agree, 0.5)


def test_target_update_refreshes_the_target_and_both_frozen_encoder_copies():
    ts = mmsa.MmsaState(
        params={"agent": 1.0, "mixer": 2.0, "sale": 3.0, "model": 4.0},
        target_params={"agent": 0.0, "mixer": 0.0},
        frozen_sale=5.0,
        frozen_sale_target=6.0,
        opt_state=None,
        updates=jnp.int32(0),
    )
    algo = mmsa.build(ENV.spec, *_sections(mmsa_cfg()))
    out = algo.target_update(ts)
    assert out.target_params == {"agent": 1.0, "mixer": 2.0}
    assert (out.frozen_sale, out.frozen_sale_target) == (3.0, 5.0)  # TD7: the target reads the old copy


# ---------------------------------------------------------------- the learner


def mmsa_cfg(*overrides):
    from jlmarl.config import load_config

    return OmegaConf.to_container(load_config([*TINY, *overrides]), resolve=True)


def _sections(cfg):
    return cfg["algo"], cfg["mmsa"]


def test_each_loss_reaches_only_its_own_networks(default, batch):
    """The TD loss moves the agents and the mixer only (frozen encoders, sg(rollout), sg(h)):
    never the world model or the SALE encoders; the SALE loss moves only the encoders; every
    world-model loss moves only the world model."""
    nets, _, ts = default
    names = (
        "td",
        "sale_obs",
        "sale_state",
        "kl_prior",
        "kl_posterior",
        "rec_embedding",
        "rec_hidden",
        "policy_ce",
    )

    def terms(params):
        _, t = mmsa.loss_terms(nets, params, ts, batch, jax.random.PRNGKey(3))
        return jnp.stack([t[k] for k in names])

    jac = jax.jit(jax.jacrev(terms))(ts.params)  # every leaf [len(names), ...]
    owners = {"td": {"agent", "mixer"}, "sale_obs": {"sale"}}
    for i, name in enumerate(names):
        moved = {
            group
            for group, g in jac.items()
            if any(np.abs(np.asarray(x[i])).max() > 0 for x in jax.tree.leaves(g))
        }
        assert moved == owners.get(name, {"model"}), name


def test_rollout_scale_multiplies_what_the_mixer_reads_and_zero_hides_the_model(default, batch):
    """mmsa.rollout_scale: the mixer reads [s, scale * ŝ^Rollout]; at 0 the TD loss is the same
    whatever the world model's parameters (the model still trains on its own losses)."""
    nets, _, ts = default
    state, rollout = jnp.ones((2, 3, 4)), jnp.full((2, 3, 6), 2.0)
    got = dataclasses.replace(nets, rollout_scale=0.25).mixer_conditioning(state, rollout)
    np.testing.assert_array_equal(got, np.concatenate([np.ones((2, 3, 4)), np.full((2, 3, 6), 0.5)], -1))

    hidden = dataclasses.replace(nets, rollout_scale=0.0)
    moved = ts.params | {"model": jax.tree.map(lambda x: x + 0.5, ts.params["model"])}

    def td(n, params):
        return float(mmsa.loss_terms(n, params, ts, batch, jax.random.PRNGKey(3))[1]["td"])

    assert td(hidden, moved) == td(hidden, ts.params)
    assert td(nets, moved) != td(nets, ts.params)  # at the default the model's rollout matters


def test_the_reconstruction_options(default, batch):
    """rec_reduction=sum is the squared error summed over features: the paper's MSE (a mean)
    times the width of what is reconstructed (the joint h: n x hidden; the embeddings: 3 d)."""
    nets, _, ts = default
    key = jax.random.PRNGKey(3)
    _, mean = jax.jit(lambda p: mmsa.loss_terms(nets, p, ts, batch, key))(ts.params)
    summed = dataclasses.replace(nets, rec_reduction="sum")
    _, total = jax.jit(lambda p: mmsa.loss_terms(summed, p, ts, batch, key))(ts.params)
    hidden = ENV.spec.n_agents * 8  # algo.hidden_dim=8 (TINY)
    np.testing.assert_allclose(total["rec_hidden"], hidden * mean["rec_hidden"], rtol=1e-5)
    width = 3 * nets.model.latent_dim  # (z^sa, z^s, phi^sa)
    np.testing.assert_allclose(total["rec_embedding"], width * mean["rec_embedding"], rtol=1e-5)
    np.testing.assert_allclose(total["kl_posterior"], mean["kl_posterior"], rtol=1e-6)
    # kl_weight scales L_KL's two terms in the total loss, not in the metrics
    light = dataclasses.replace(nets, kl_weight=0.25)
    loss, terms = jax.jit(lambda p: mmsa.loss_terms(light, p, ts, batch, key))(ts.params)
    full_loss = jax.jit(lambda p: mmsa.loss_terms(nets, p, ts, batch, key))(ts.params)[0]
    kl = float(mean["kl_prior"] + mean["kl_posterior"])
    np.testing.assert_allclose(loss, full_loss - 0.75 * kl, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(terms["kl_prior"], mean["kl_prior"], rtol=1e-6)
    # rec_hidden=both is VAE-2's prediction of h_{t+1} plus its reconstruction of h_t (same)
    rec = {
        which: jax.jit(
            lambda p, w=which: mmsa.loss_terms(dataclasses.replace(nets, rec_hidden=w), p, ts, batch, key)
        )(ts.params)[1]["rec_hidden"]
        for which in ("same", "both")
    }
    assert abs(float(rec["same"]) - float(mean["rec_hidden"])) > 1e-6
    np.testing.assert_allclose(rec["both"], rec["same"] + mean["rec_hidden"], rtol=1e-5)


def test_acting_reads_only_each_agents_own_history(default):
    """Three greedy steps; the other agent's observations differ: agent 0's hidden state and
    actions do not move, agent 1's hidden state does. act takes no global state at all."""
    _, algo, ts = default
    assert not algo.act_uses_state
    act = jax.jit(
        lambda actor, obs: algo.act(ts, actor, obs, jnp.ones((4, 2, 3), bool), jax.random.PRNGKey(1), 0, True)
    )
    obs = jax.random.normal(jax.random.PRNGKey(2), (3, 4, 2, 1))
    other = obs.at[:, :, 1].set(jax.random.normal(jax.random.PRNGKey(3), (3, 4, 1)))
    runs = []
    for o in (obs, other):
        actor, acts = algo.init_actor(4), []
        for t in range(3):
            a, actor = act(actor, o[t])
            acts.append(a)
        runs.append((np.stack(acts), np.asarray(actor.hidden)))
    np.testing.assert_array_equal(runs[0][0][..., 0], runs[1][0][..., 0])
    np.testing.assert_array_equal(runs[0][1][:, 0], runs[1][1][:, 0])
    assert not np.allclose(runs[0][1][:, 1], runs[1][1][:, 1])


def test_the_agent_at_given_actions_equals_the_agent_at_every_action(default, batch):
    """The double-Q target evaluates the target network at the greedy action only
    (SaleAgent candidates=1): the same Q as the all-action network, picked at that action."""
    nets, _, ts = default
    a = nets.spec.n_actions
    inputs = episode_inputs(batch.obs, batch.actions, a)
    full = jnp.concatenate([inputs, mmsa.agent_features(nets, ts.frozen_sale, batch.obs)], -1)
    actions = jax.random.randint(jax.random.PRNGKey(4), batch.obs.shape[:3], 0, a)
    one = jnp.concatenate(
        [inputs, sale_features_at(nets.obs_sale, ts.frozen_sale, batch.obs, actions, a)], -1
    )
    q_all = jax.jit(lambda x: unroll(nets.agent, ts.params["agent"], x))(full)
    at = nets.agent.clone(candidates=1)
    q_one = jax.jit(lambda x: unroll(at, ts.params["agent"], x))(one)[..., 0]
    np.testing.assert_allclose(
        q_one, jnp.take_along_axis(q_all, actions[..., None], -1)[..., 0], rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("horizon", [1, 10])
def test_imagination_shapes_and_the_first_step_by_hand(horizon):
    n, a, d, h = 2, 3, 4, 8
    model = MmsaWorldModel(n, a, d, h, width=8)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, n * h)), jnp.zeros((1, n * a)))
    start = jax.random.normal(jax.random.PRNGKey(1), (2, 5, d))  # [B, T+1, d]
    actions = jnp.zeros((2, 4, n), jnp.int32)  # [B, T, n]
    shapes = jax.eval_shape(lambda s: mmsa.imagined_rollout(model, params, s, horizon), start)
    assert shapes.shape == (2, 5, (horizon + 1) * d)
    pred_s, pred_h = jax.eval_shape(
        lambda s: mmsa.recorded_rollout(model, params, s, actions, horizon), start
    )
    assert pred_s.shape == (horizon, 2, 5, d) and pred_h.shape == (horizon, 2, 5, n * h)
    if horizon == 1:  # one step through the blocks by hand

        @jax.jit
        def both(s):
            logits = model.apply(params, s, method=MmsaWorldModel.policy)  # [2, 5, n, a]
            greedy = jax.nn.one_hot(jnp.argmax(logits, -1), a).reshape(2, 5, n * a)
            e = model.apply(params, s, greedy, method=MmsaWorldModel.embed)  # [z^sa, z^s, phi^sa]
            mu, _ = model.apply(params, e, method=lambda m, x: m.prior(x))
            return mmsa.imagined_rollout(model, params, s, 1), model.apply(
                params, mu, method=lambda m, x: m.transition(x)
            )

        rollout, pred = both(start)
        np.testing.assert_allclose(rollout[..., :d], start, rtol=1e-6)
        np.testing.assert_allclose(rollout[..., d:], pred[..., d : 2 * d], rtol=1e-5, atol=1e-6)


def test_the_bottleneck_diagnostic_decodes_the_real_next_latent_row_by_row(batch):
    """wm_h_recon_1: VAE-2 on target(posterior mean of t+1, a_{t+1}) against h_{t+1}, summed
    over h's entries and averaged over the pairs (t, t+1) of real steps, computed here one
    row at a time in float64."""
    n, a, d, h = 2, 3, 4, 8
    model = MmsaWorldModel(n, a, d, h, width=8)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, n * h)), jnp.zeros((1, n * a)))
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    b, t = 2, 4
    mean = jax.random.normal(k[0], (b, t + 1, d))
    hidden = jax.random.normal(k[1], (b, t + 1, n * h))
    actions = jax.random.randint(k[2], (b, t, n), 0, a)
    mask = jnp.array([[True] * 4, [True, True, False, False]])  # episode 1 ends after 2 steps
    batch = jax.tree.map(lambda x: x[:b], batch.truncate(t)).replace(actions=actions, mask=mask)
    nets = dataclasses.replace(mmsa.make_nets(ENV.spec, *_sections(mmsa_cfg())), model=model, horizon=1)
    got = float(mmsa.diagnostics(nets, params, mean, hidden, batch)["wm_h_recon_1"])
    errs = []
    valid = np.concatenate([np.ones((b, 1), bool), np.asarray(mask)], axis=1)
    for i in range(b):
        for s in range(t):
            if not (valid[i, s] and valid[i, s + 1]):
                continue
            act = np.zeros(n * a, np.float32)
            if s + 1 < t:  # the action taken at t+1 (none after the episode's last step)
                for j in range(n):
                    act[j * a + int(actions[i, s + 1, j])] = 1.0
            e = model.apply(params, mean[i, s + 1], jnp.asarray(act), method=MmsaWorldModel.target)
            guess = np.asarray(model.apply(params, e, method=MmsaWorldModel.decode_hidden), np.float64)
            errs.append(((guess - np.asarray(hidden[i, s + 1], np.float64)) ** 2).sum())
    assert len(errs) == 4 + 2
    np.testing.assert_allclose(got, np.mean(errs), rtol=1e-5)


VARIANTS = {
    "default": [],
    "no_wm": ["mmsa.world_model=false"],
    "no_sale": ["mmsa.sale=false"],
    "no_klb": ["mmsa.kl_balance=false"],
    "no_gs": ["mmsa.global_state=false"],
    "horizon_1": ["mmsa.horizon=1"],
    "horizon_10": ["mmsa.horizon=10"],
    "layer_norm": ["mmsa.normalizer=layer_norm"],
    "no_norm": ["mmsa.normalizer=none"],
    "sum_free_bits_same": ["mmsa.rec_reduction=sum", "mmsa.free_nats=1.0", "mmsa.rec_hidden=same"],
    "wide_decoder": ["mmsa.decoder_hidden=5"],
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_builds_and_its_update_traces(variant, batch):
    """Each variant's update traces end to end (jax.eval_shape: no compile; the default trains
    for real in the CLI test) with the metrics and mixer input its switches imply."""
    cfg = mmsa_cfg(*VARIANTS[variant])
    algo = algos.build("mmsa", ENV.spec, cfg)
    ts = jax.eval_shape(algo.init, jax.random.PRNGKey(0))
    new_ts, metrics = jax.eval_shape(algo.update, ts, batch, jax.random.PRNGKey(1), update_ctx())
    assert jax.tree.structure(new_ts) == jax.tree.structure(ts)
    assert all(m.shape == () for m in metrics.values())
    m = cfg["mmsa"]
    assert ("kl_posterior" in metrics) == m["world_model"]
    assert ("sale_obs" in metrics) == m["sale"]
    assert ("sale_state" in metrics) == (m["sale"] and m["world_model"])
    if m["world_model"]:
        assert {f"wm_h_model_{m['horizon']}", "wm_h_still_1", "wm_h_mean_1", "wm_zs_model_1"} <= set(metrics)
    # the mixer's hypernetworks read [s, rollout] (rollout = (j + 1) x latent x n), or less
    width = (ENV.spec.state_dim if m["global_state"] else 0) + (
        (m["horizon"] + 1) * m["latent_dim"] * ENV.spec.n_agents if m["world_model"] else 0
    )
    assert ts.params["mixer"]["params"]["hyper_b1"]["kernel"].shape[0] == width
    if m["world_model"]:  # VAE-2's decoder is decoder_hidden wide (model_hidden by default), alone
        model = ts.params["model"]["params"]
        blocks = ("hidden_decoder", "transition", "policy_head")
        widths = {k: model[k]["Dense_0"]["kernel"].shape[1] for k in blocks}
        assert widths["hidden_decoder"] == (m["decoder_hidden"] or m["model_hidden"])
        assert widths["transition"] == widths["policy_head"] == m["model_hidden"]


def test_a_mixer_without_input_is_refused():
    with pytest.raises(AlgoConfigError, match="mmsa.global_state=false with mmsa.world_model=false"):
        mmsa.build(ENV.spec, *_sections(mmsa_cfg("mmsa.world_model=false", "mmsa.global_state=false")))


def test_a_short_cli_run_trains_and_logs_the_world_model_errors(tmp_path):
    """The default variant compiled and trained for real: python -m jlmarl.train exits 0."""
    run = tmp_path / "run"
    result = train(
        *TINY,
        "total_steps=200",
        "num_envs=4",
        "batch_size=4",
        "buffer_size=16",
        "episodes_per_update=4",
        "test_interval=100",
        "test_episodes=2",
        "plot=false",
        "progress=false",
        f"run_dir={run}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last = json.loads((run / "metrics" / "seed_0.jsonl").read_text().splitlines()[-1])
    assert last["env_steps"] >= 200 and np.isfinite(last["loss"])
    assert last["wm_h_model_3"] >= 0 and last["wm_h_still_1"] >= 0
    q = np.array(json.loads((run / "q_tables.json").read_text())["seeds"][0]["states"][0]["q_tot"])
    assert q.shape == (3, 3) and np.isfinite(q).all()  # joint_q mixes on [s, rollout] too
