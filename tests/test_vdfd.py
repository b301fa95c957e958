"""VDFD (seed 004): GALA's filters by hand, the block's equivariance and size-free
parameters, the branch masks, the stop-gradient between TD and the world model,
decentralised acting, the visibility graph of a hand-placed SMAX scene, the refusal
of graph=visibility without it, every variant's update, and the CLI on SMAX and
through the host bridge."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import update_ctx
from omegaconf import OmegaConf
from test_cli import train

from jlmarl.algos import vdfd
from jlmarl.config import load_config
from jlmarl.core.algo import AlgoConfigError
from jlmarl.core.buffer import EpisodeBatch
from jlmarl.envs.base import EnvSpec
from jlmarl.envs.smax import ally_visibility
from jlmarl.nets.agents import episode_inputs
from jlmarl.nets.gala import GALADecoder, GALAEncoder, reconstruction_loss, sharpening, smoothing
from jlmarl.nets.recurrent import unroll

N_AGENTS, OBS, ACTIONS, T, B = 3, 4, 5, 4, 2
SPEC = EnvSpec(
    "tiny_visible",
    N_AGENTS,
    OBS,
    6,
    ACTIONS,
    T,
    extras=(("ally_visibility", (N_AGENTS, N_AGENTS), "bool"),),
)
TINY = {"algo.hidden_dim": 8, "algo.mixing_embed_dim": 4, "algo.hypernet_embed": 8}
TINY_WORLD = {"latent_dim": 3, "wm_hidden": 8}


@pytest.fixture(scope="module")
def sections():
    """The composed `algo` and `vdfd` sections of algo=vdfd, tiny networks."""
    cfg = OmegaConf.to_container(load_config(["algo=vdfd", *(f"{k}={v}" for k, v in TINY.items())]))
    return cfg["algo"], {**cfg["vdfd"], **TINY_WORLD}


def tiny_batch(seed: int = 3, n: int = N_AGENTS) -> EpisodeBatch:
    """B episodes, the second one step shorter (padding after it), a random visibility."""
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    vis = jax.random.bernoulli(k[4], 0.5, (B, T + 1, n, n))
    return EpisodeBatch(
        obs=jax.random.normal(k[0], (B, T + 1, n, OBS)),
        state=jax.random.normal(k[1], (B, T + 1, SPEC.state_dim)),
        avail=jnp.ones((B, T + 1, n, ACTIONS), bool),
        actions=jax.random.randint(k[2], (B, T, n), 0, ACTIONS),
        reward=jax.random.normal(k[3], (B, T)),
        terminated=jnp.zeros((B, T), bool).at[1, T - 2].set(True),
        mask=jnp.ones((B, T), bool).at[1, T - 1].set(False),
        extras={"ally_visibility": vis | jnp.eye(n, dtype=bool)},
    )


# ---- GALA ---------------------------------------------------------------------------

PATH = jnp.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]])  # 0 - 1 - 2
H = jnp.array([[1.0, 2.0], [0.0, -1.0], [3.0, 1.0]])
W = jnp.array([[1.0, 0.0], [1.0, 2.0]])


def test_gala_filters_on_a_three_node_path_by_hand():
    # A + I degrees 2, 3, 2: entries (A+I)_ij / sqrt(d_i d_j)
    r6 = 1 / math.sqrt(6)
    smooth = np.array([[1 / 2, r6, 0], [r6, 1 / 3, r6], [0, r6, 1 / 2]])
    # 2I - A over D + 2I = diag(3, 4, 3): 2/3, 2/4 on the diagonal, -1/sqrt(12) on the edges
    r12 = 1 / math.sqrt(12)
    sharp = np.array([[2 / 3, -r12, 0], [-r12, 1 / 2, -r12], [0, -r12, 2 / 3]])
    np.testing.assert_allclose(smoothing(PATH), smooth, rtol=1e-6)
    np.testing.assert_allclose(sharpening(PATH), sharp, rtol=1e-6)
    # one linear layer: exactly filter @ H @ W; H W = [[3, 4], [-1, -2], [4, 2]]
    hw = np.array([[3.0, 4.0], [-1.0, -2.0], [4.0, 2.0]])
    params = {"params": {"layer0": {"kernel": W}}}
    np.testing.assert_allclose(GALAEncoder((2,)).apply(params, H, PATH), smooth @ hw, rtol=1e-6)
    np.testing.assert_allclose(GALADecoder((2,)).apply(params, H, PATH), sharp @ hw, rtol=1e-6)
    # node 0 of the encoder: 1/2 [3, 4] + [-1, -2] / sqrt(6)
    np.testing.assert_allclose(GALAEncoder((2,)).apply(params, H, PATH)[0], [1.5 - r6, 2 - 2 * r6], rtol=1e-6)
    # the diagonal of adj is ignored (self loops come from the filters' own forms)
    np.testing.assert_allclose(smoothing(PATH + jnp.eye(3)), smooth, rtol=1e-6)
    # ½‖X − X̂‖² per node
    np.testing.assert_allclose(reconstruction_loss(H, jnp.zeros_like(H)), [2.5, 0.5, 5.0])


def test_an_isolated_node_keeps_its_features_under_both_filters():
    adj = jnp.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    for filt in (smoothing(adj), sharpening(adj)):
        np.testing.assert_allclose(filt[2], [0, 0, 1], atol=1e-7)
        np.testing.assert_allclose(filt[:, 2], [0, 0, 1], atol=1e-7)


def test_on_a_complete_graph_gala_keeps_only_the_team_mean():
    # Why vdfd.graph=full cannot reconstruct per-agent features: A + I is all ones, so
    # smoothing is J/n and every node's encoding is the mean; sharpening maps a
    # node-constant input to (2 - (n - 1)) / (n + 1) of it: zero at n = 3.
    full = vdfd.full_adjacency(3)
    np.testing.assert_allclose(smoothing(full), np.full((3, 3), 1 / 3), rtol=1e-6)
    params = {"params": {"layer0": {"kernel": W}}}
    encoded = GALAEncoder((2,)).apply(params, H, full)  # H W rows [3, 4], [-1, -2], [4, 2]
    np.testing.assert_allclose(encoded, np.tile([2.0, 4 / 3], (3, 1)), rtol=1e-6)
    np.testing.assert_allclose(GALADecoder((2,)).apply(params, encoded, full), np.zeros((3, 2)), atol=1e-6)
    for n, row_sum in ((2, 1 / 3), (3, 0.0), (5, -1 / 3)):
        np.testing.assert_allclose(sharpening(vdfd.full_adjacency(n)).sum(-1), np.full(n, row_sum), atol=1e-6)


def test_permuting_nodes_and_adjacency_permutes_the_gala_output():
    n, k = 5, jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(k[0], (2, n, 3))
    adj = jax.random.bernoulli(k[1], 0.5, (2, n, n))
    adj = adj | jnp.swapaxes(adj, 1, 2)
    perm = jnp.array([3, 0, 4, 1, 2])
    permuted_adj = adj[:, perm][:, :, perm]
    for block in (GALAEncoder((6, 4)), GALADecoder((6, 4))):
        params = block.init(k[2], x, adj)
        out = block.apply(params, x, adj)
        np.testing.assert_allclose(block.apply(params, x[:, perm], permuted_adj), out[:, perm], rtol=1e-5)


def test_the_same_parameters_run_on_3_and_on_10_agents(sections):
    cfg, method = sections
    s = vdfd.Settings.from_cfg(cfg, method)
    spec10 = EnvSpec("ten", 10, OBS, 6, ACTIONS, T)
    model3, model10 = vdfd.WorldModel(SPEC, 8, s), vdfd.WorldModel(spec10, 8, s)
    params = model3.init(jax.random.PRNGKey(0))
    shapes = lambda p: jax.tree.map(jnp.shape, p)  # noqa: E731
    assert shapes(params) == shapes(model10.init(jax.random.PRNGKey(1)))
    batch = tiny_batch(n=10)
    hs = jax.random.normal(jax.random.PRNGKey(2), (B, T + 1, 10, 8))
    valid = vdfd.observed_steps(batch.mask)
    last = jnp.zeros((B, T + 1, 10, ACTIONS))
    adj = vdfd.batch_adjacency(batch, "visibility")
    infer = jax.jit(model10.infer)  # a forward compile: cheaper than eager ops at 10 agents' shapes
    terms, latents, _ = infer(params, hs, batch.obs, last, valid, adj, jax.random.PRNGKey(4))
    assert latents["s"].shape == (B, T + 1, 10, 3)
    assert all(np.isfinite(float(v)) for v in terms.values())


# ---- pieces of the loss ----------------------------------------------------------------


def test_masks_at_zero_remove_a_branch_exactly():
    ac, af, st = jnp.array([1.0, 2.0]), jnp.array([10.0, 20.0]), jnp.array([100.0, 300.0])
    np.testing.assert_array_equal(vdfd.masked_output(ac, af, st, (1.0, 1.0, 1.0)), [111.0, 322.0])
    np.testing.assert_array_equal(vdfd.masked_output(ac, af, st, (2.0, 0.5, 0.0)), [7.0, 14.0])
    nan = jnp.full((2,), jnp.nan)  # a dropped branch is not even read
    np.testing.assert_array_equal(vdfd.masked_output(nan, af, st, (0.0, 1.0, 1.0)), [110.0, 320.0])
    np.testing.assert_array_equal(vdfd.masked_output(ac, nan, st, (1.0, 0.0, 1.0)), [101.0, 302.0])
    np.testing.assert_array_equal(vdfd.masked_output(ac, af, nan, (1.0, 1.0, 0.0)), [11.0, 22.0])


def test_loss_pieces_by_hand():
    # q = N(1, 1), prior = N(0, 4): KL(prior || N(0, 1)) = (4 - 1 - log 4) / 2 and
    # KL(q || prior) = log 2 + (1 + 1) / 8 - 1/2: together 1.25; balancing keeps the value
    q, p = (jnp.array([1.0]), jnp.array([0.0])), (jnp.array([0.0]), jnp.log(jnp.array([4.0])))
    np.testing.assert_allclose(vdfd.branch_kl(q, p, None), 1.25, rtol=1e-6)
    np.testing.assert_allclose(vdfd.branch_kl(q, p, 0.8), 1.25, rtol=1e-6)
    np.testing.assert_allclose(vdfd.branch_kl(q, None, 0.8), 0.5, rtol=1e-6)  # VDF-POST: KL(q || N(0, I))
    terms = {"ac_kl": 1.0, "ac_rec": 2.0, "af_kl": 3.0, "af_rec": 4.0, "st_rec": 5.0}
    assert vdfd.weighted_loss(1.0, terms, (1.0, 0.5, 0.0, 2.0, 1.0)) == 1 + 1 + 1 + 0 + 8 + 5
    np.testing.assert_allclose(vdfd.mse(jnp.array([1.0, 2.0, 3.0]), jnp.array([0.0, 0.0, 0.0])), 14 / 3)
    # o_0 and o_{t+1} of every step taken are real; the running mean holds after the end
    valid = vdfd.observed_steps(jnp.array([[True, True, False]]))
    np.testing.assert_array_equal(valid, [[True, True, True, False]])
    obs = jnp.array([2.0, 4.0, 6.0, 100.0]).reshape(1, 4, 1, 1)
    np.testing.assert_allclose(vdfd.running_mean(obs, valid)[0, :, 0, 0], [2.0, 3.0, 4.0, 4.0])
    np.testing.assert_allclose(
        vdfd.masked_mean(
            jnp.array([[[1.0, 3.0], [5.0, 7.0], [100.0, 100.0]]]), jnp.array([[True, True, False]])
        ),
        4.0,
    )
    # k = 0 error: squared errors summed over 2 agents x 1 feature, averaged over real steps
    real = jnp.zeros((1, 3, 2, 1))
    decoded = jnp.array([[[1.0], [2.0]], [[3.0], [0.0]], [[9.0], [9.0]]])[None]
    np.testing.assert_allclose(
        vdfd.reconstruction_error(decoded, real, jnp.array([[True, True, False]])), (5 + 9) / 2
    )


def test_by_default_kl_balancing_moves_the_prior_faster_than_the_posterior(sections):
    # q = N(1, 1), p = N(0, 1): d KL(q || p) / d mu_q = 1 = -d / d mu_p; balancing scales the
    # posterior's side by alpha and the prior's by 1 - alpha (the paper: the prior learns faster)
    s = vdfd.Settings.from_cfg(*sections)
    zero = jnp.zeros(1)
    grad_q, grad_p = jax.grad(
        lambda mq, mp: vdfd.branch_kl((mq, zero), (mp, zero), s.kl_alpha).sum(), argnums=(0, 1)
    )(jnp.ones(1), zero)
    np.testing.assert_allclose(grad_q, s.kl_alpha, rtol=1e-6)
    # the prior's mean also feels KL(p || N(0, I)), whose gradient is 0 at mu_p = 0
    np.testing.assert_allclose(grad_p, -(1.0 - s.kl_alpha), rtol=1e-6)
    assert abs(grad_p[0]) > abs(grad_q[0])


def test_visibility_graph_of_a_hand_placed_smax_scene():
    """Allies 0, 1 (sight 9) and 2 (sight 4, a shorter-sighted type); ally 3 is dead.
    0 at (0, 0), 1 at (8, 0), 2 at (0, 6), 3 at (1, 0): 0 and 1 see each other (8 < 9);
    0 sees 2 (6 < 9) but 2 does not see 0 (6 > 4): linked once symmetrised; 1 and 2 are
    10 apart (unlinked); 3 is next to 0 but dead: isolated."""
    positions = jnp.array([[0.0, 0.0], [8.0, 0.0], [0.0, 6.0], [1.0, 0.0], [30.0, 30.0]])
    alive = jnp.array([True, True, True, False, True])  # the last unit is an enemy
    sight = jnp.array([9.0, 9.0, 4.0, 9.0, 9.0])
    vis = ally_visibility(positions, alive, sight, 4)
    assert bool(vis[0, 2]) and not bool(vis[2, 0])  # the scene is asymmetric as built
    expected = np.array([[0, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(vdfd.visibility_adjacency(vis), expected)
    # through a batch's extras ([B, T+1, n, n]), and GALA leaves the dead ally alone
    batch = tiny_batch(n=4).replace(extras={"ally_visibility": jnp.broadcast_to(vis, (B, T + 1, 4, 4))})
    adj = vdfd.batch_adjacency(batch, "visibility")
    np.testing.assert_array_equal(adj[1, 2], expected)
    np.testing.assert_allclose(smoothing(adj[0, 0])[3], [0, 0, 0, 1], atol=1e-7)
    np.testing.assert_array_equal(vdfd.batch_adjacency(batch, "full")[0, 0], 1 - np.eye(4))


def test_graph_visibility_is_refused_on_an_env_without_it(sections):
    cfg, method = sections
    blind = EnvSpec("blind", N_AGENTS, OBS, 6, ACTIONS, T)
    with pytest.raises(
        AlgoConfigError, match=r"^vdfd.graph=visibility needs .*blind does not: use vdfd.graph=full$"
    ):
        vdfd.build(blind, cfg, {**method, "graph": "visibility"})
    vdfd.build(blind, cfg, method)  # graph=full builds


@pytest.fixture(scope="module")
def warm(sections):
    """The default variant's update, run eagerly once before every eager test of the file:
    eager execution compiles each primitive at each shape on first use (about a minute
    of CPU for VDFD's update, then about a second per call), so it is paid once here."""
    _, _, params, algo, ts = loss_setup(*sections)
    with jax.disable_jit():
        new, metrics = algo.update(ts, tiny_batch(), jax.random.PRNGKey(9), update_ctx())
    return params, new, metrics


def loss_setup(cfg, method, **overrides):
    """(nets, settings, params, q_target_all) of a freshly built VDFD on SPEC."""
    method = {**method, **overrides}
    s = vdfd.Settings.from_cfg(cfg, method)
    algo = vdfd.build(SPEC, cfg, method)
    ts = algo.init(jax.random.PRNGKey(0))
    return vdfd.make_nets(SPEC, cfg, s), s, ts.params, algo, ts


def td_and_total(nets, s, params, batch):
    inputs = episode_inputs(batch.obs, batch.actions, ACTIONS)
    q_target = unroll(nets.agent, params["agent"], inputs)
    total, metrics = vdfd.vdfd_loss(nets, s, params, params, q_target, batch, jax.random.PRNGKey(7))
    return metrics["td_loss"], total


def test_the_td_loss_sends_no_gradient_into_the_world_model(sections, warm):
    nets, s, params, _, _ = loss_setup(*sections, graph="visibility")
    batch = tiny_batch()
    with jax.disable_jit():  # after `warm`: seconds, where one compile took ~10 s
        td_grads, total_grads = (
            jax.grad(lambda q, i=i: td_and_total(nets, s, q, batch)[i])(params) for i in (0, 1)
        )
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(td_grads["world"]))
    assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(td_grads["agent"]))
    assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(td_grads["mixer"]))
    assert all(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(total_grads["world"]))


def test_a_masked_branch_does_not_reach_the_mixer(sections, warm):
    """With mask_ac=0, moving the action-conditioned posterior leaves L_TD unchanged to
    the bit (its own loss moves); with mask_ac=1 the same move changes L_TD."""
    batch = tiny_batch()

    def td_before_after(mask_ac):
        nets, s, params, _, _ = loss_setup(*sections, mask_ac=mask_ac)
        moved = jax.tree.map(lambda w: w + 0.5, params["world"]["ac_posterior"])
        other = {**params, "world": {**params["world"], "ac_posterior": moved}}
        with jax.disable_jit():
            return [td_and_total(nets, s, p, batch) for p in (params, other)]

    (td0, total0), (td1, total1) = td_before_after(0.0)
    assert float(td0) == float(td1) and float(total0) != float(total1)
    (td0, _), (td1, _) = td_before_after(1.0)
    assert float(td0) != float(td1)


def test_the_diagnostics_read_only_the_first_diag_episodes(sections, warm):
    """diag_episodes=1 changes no loss, and its action-conditioned diagnostics (from the
    posterior means along the recorded actions: no draw) are those of episode 0 alone.
    `warm` is the same loss (same parameters, batch and key) with every episode read."""
    batch, key = tiny_batch(), jax.random.PRNGKey(9)
    first = jax.tree.map(lambda x: x[:1], batch)

    def run(batch, episodes):
        nets, s, params, _, _ = loss_setup(*sections, diag_episodes=episodes)
        q_target = unroll(nets.agent, params["agent"], episode_inputs(batch.obs, batch.actions, ACTIONS))
        with jax.disable_jit():
            return vdfd.vdfd_loss(nets, s, params, params, q_target, batch, key)

    m_all = warm[2]
    (total_one, m_one), (_, m_first) = run(batch, 1), run(first, B)
    assert float(total_one) == float(m_all["loss"]) and float(m_one["td_loss"]) == float(m_all["td_loss"])
    ac = [f"wm_ac_{kind}_{k}" for kind in ("model", "still", "mean") for k in (1, 2, 3)]
    np.testing.assert_allclose([m_one[m] for m in ac], [m_first[m] for m in ac], rtol=1e-6)
    assert any(abs(float(m_one[m]) - float(m_all[m])) > 1e-6 for m in ac)


def test_acting_is_decentralised(sections):
    """Other agents' observations change: agent 0's action and carry do not (act gets no
    state at all); agent 1's own observation does change its carry."""
    _, _, _, algo, ts = loss_setup(*sections)
    obs = jax.random.normal(jax.random.PRNGKey(1), (4, N_AGENTS, OBS))
    avail = jnp.ones((4, N_AGENTS, ACTIONS), bool)
    actor = algo.init_actor(4)
    a, carry = algo.act(ts, actor, obs, avail, jax.random.PRNGKey(2), 0, True)
    others = obs.at[:, 1:].set(jax.random.normal(jax.random.PRNGKey(5), (4, N_AGENTS - 1, OBS)) * 10)
    a2, carry2 = algo.act(ts, actor, others, avail, jax.random.PRNGKey(2), 0, True)
    np.testing.assert_array_equal(a[:, 0], a2[:, 0])
    np.testing.assert_array_equal(carry.hidden[:, 0], carry2.hidden[:, 0])
    assert not np.allclose(carry.hidden[:, 1], carry2.hidden[:, 1])


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"graph": "visibility"},
        {"mask_ac": 0.0},
        {"mask_af": 0.0},
        {"mask_st": 0.0},
        {"posterior": "mlp"},
        {"prior": False},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default",
)
def test_each_variant_builds_and_trains_one_update(sections, warm, overrides):
    if overrides:
        _, _, params, algo, ts = loss_setup(*sections, **overrides)
        with jax.disable_jit():  # eager after `warm`: no compile per variant
            new, metrics = algo.update(ts, tiny_batch(), jax.random.PRNGKey(9), update_ctx())
    else:
        params, new, metrics = warm
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert {"wm_ac_model_0", "wm_af_model_0"} <= set(metrics)  # each branch's reconstruction
    for k in (1, 2, 3):  # both dynamic branches beside "nothing changes" and the best constant
        assert {f"wm_{b}_{kind}_{k}" for b in ("ac", "af") for kind in ("model", "still", "mean")} <= set(
            metrics
        )
    assert int(new.updates) == 1
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), params, new.params)
    assert all(jax.tree.leaves(changed["agent"])) and any(jax.tree.leaves(changed["world"]))


TINY_CLI = [f"{k}={v}" for k, v in TINY.items()] + [f"vdfd.{k}={v}" for k, v in TINY_WORLD.items()]


@pytest.mark.slow  # a whole SMAX chunk compile (~30 s of CPU); the variants test covers the update
def test_cli_run_on_smax_with_the_visibility_graph(tmp_path):
    result = train(
        "algo=vdfd",
        "env=smax_3m",
        "vdfd.graph=visibility",
        *TINY_CLI,
        "total_steps=120",
        "num_envs=2",
        "batch_size=2",
        "test_interval=100",
        "test_episodes=1",
        "time_buckets=1",
        "progress=false",
        "plot=false",
        f"run_dir={tmp_path / 's'}",
    )
    assert result.returncode == 0, result.stderr
    line = json.loads((tmp_path / "s" / "metrics" / "seed_0.jsonl").read_text().splitlines()[-1])
    assert "test_win_rate" in line


def test_cli_run_through_the_host_bridge(tmp_path):
    """numpy_matrix_three_state: NumPy envs in worker processes behind host callbacks."""
    result = train(
        "algo=vdfd",
        "env=numpy_matrix_three_state",
        "env.host.workers=1",
        *TINY_CLI,
        "total_steps=60",
        "num_envs=2",
        "batch_size=2",
        "test_interval=40",
        "test_episodes=2",
        "progress=false",
        "plot=false",
        f"run_dir={tmp_path / 'h'}",
    )
    assert result.returncode == 0, result.stderr
    line = json.loads((tmp_path / "h" / "metrics" / "seed_0.jsonl").read_text().splitlines()[-1])
    assert "test_return_mean" in line
