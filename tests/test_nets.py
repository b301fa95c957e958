import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jlmarl.nets.agents import RNNAgent, episode_inputs, masked_argmax
from jlmarl.nets.gaussian import LOGVAR_RANGE, GaussianHead, sample
from jlmarl.nets.mixers import QMixer, VDNMixer
from jlmarl.nets.mlp import MLP, OneHotTailDense, elu
from jlmarl.nets.recurrent import unroll


def test_qmix_is_monotonic_in_every_agent_utility():
    mixer = QMixer(n_agents=4)
    key_p, key_q, key_s = jax.random.split(jax.random.PRNGKey(0), 3)
    params = mixer.init(key_p, jnp.zeros((1, 4)), jnp.zeros((1, 7)))
    qs = 5.0 * jax.random.normal(key_q, (256, 4))
    states = 3.0 * jax.random.normal(key_s, (256, 7))
    grads = jax.vmap(jax.grad(lambda q, s: mixer.apply(params, q, s)))(qs, states)
    assert grads.shape == (256, 4)
    assert float(grads.min()) >= 0.0
    assert float(grads.max()) > 0.0


def test_qmix_handles_leading_axes():
    mixer = QMixer(n_agents=3)
    params = mixer.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)), jnp.zeros((1, 5)))
    out = mixer.apply(params, jnp.ones((2, 6, 9, 3)), jnp.ones((2, 6, 9, 5)))
    assert out.shape == (2, 6, 9)


def test_vdn_is_a_sum():
    qs = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    out = VDNMixer().apply({}, qs, jnp.zeros((5, 8)))
    np.testing.assert_allclose(out, qs.sum(-1), rtol=1e-6)


def test_masked_argmax_never_picks_unavailable():
    q = jnp.array([[5.0, 1.0, 3.0], [-1.0, -2.0, -3.0]])
    avail = jnp.array([[False, True, True], [False, False, True]])
    np.testing.assert_array_equal(masked_argmax(q, avail), [2, 2])


def test_agent_shares_parameters_and_tells_agents_apart_by_id():
    agent = RNNAgent(hidden_dim=16, n_actions=4)
    obs = jnp.ones((2, 5, 3, 6))  # [B, T+1, n, obs]: identical obs for all agents
    actions = jnp.zeros((2, 4, 3), jnp.int32)
    inputs = episode_inputs(obs, actions, 4)
    assert inputs.shape == (2, 5, 3, 6 + 4 + 3)
    np.testing.assert_array_equal(inputs[0, 0, :, 6:10], 0.0)  # no last action at t=0
    np.testing.assert_array_equal(inputs[0, 1, :, 6], 1.0)  # action 0 at t=0
    params = agent.init(jax.random.PRNGKey(0), jnp.zeros((1, 16)), jnp.zeros((1, 13)))
    q = unroll(agent, params, inputs)
    assert q.shape == (2, 5, 3, 4)
    assert not np.allclose(q[0, 0, 0], q[0, 0, 1])  # same obs, different ids


def test_unroll_matches_step_by_step():
    agent = RNNAgent(hidden_dim=8, n_actions=3)
    params = agent.init(jax.random.PRNGKey(0), jnp.zeros((1, 8)), jnp.zeros((1, 5)))
    inputs = jax.random.normal(jax.random.PRNGKey(1), (1, 4, 2, 5))
    q = unroll(agent, params, inputs)
    h = jnp.zeros((1, 2, 8))
    for t in range(4):
        h, qt = agent.apply(params, h, inputs[:, t])
        np.testing.assert_allclose(q[:, t], qt, rtol=1e-5, atol=1e-6)


class _StepByStep:
    """A module seen without its trunk_inputs: unroll falls back to the plain scan."""

    def __init__(self, module):
        self.module, self.hidden_dim = module, module.hidden_dim

    def apply(self, params, h, x):
        return self.module.apply(params, h, x)


def test_batched_trunk_unroll_equals_the_step_by_step_scan_with_its_gradients():
    from jlmarl.nets.latent import ROLIM, LatentAgent
    from jlmarl.nets.recurrent import RecurrentTrunk

    x = jax.random.normal(jax.random.PRNGKey(3), (4, 7, 3, 9))  # [B, T, n, D]
    h0 = jax.random.normal(jax.random.PRNGKey(4), (4, 3, 16))  # a segment's start state
    resets = jnp.zeros((4, 7), bool).at[1, 3].set(True).at[2, 0].set(True)  # new episodes
    kw = {"h0": h0, "resets": resets}
    modules = (
        RNNAgent(16, 5),
        RNNAgent(16, 5, 2, True),
        RecurrentTrunk(16),
        ROLIM(16, 4),
        LatentAgent(16, 5, 3),
    )
    for module in modules:
        params = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 16)), x[0, 0])
        fast_h, fast = unroll(module, params, x, with_hidden=True, **kw)
        slow_h, slow = unroll(_StepByStep(module), params, x, with_hidden=True, **kw)
        np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fast_h, slow_h, rtol=1e-5, atol=1e-6)
        if isinstance(module, RecurrentTrunk | ROLIM):
            continue  # the gradient path is the same code for every trunk module
        g_fast = jax.grad(lambda p, m=module: unroll(m, p, x, **kw).sum())(params)
        g_slow = jax.grad(lambda p, m=module: unroll(_StepByStep(m), p, x, **kw).sum())(params)
        for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_slow), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_reset_inside_a_segment_restarts_the_state_as_a_fresh_unroll_would():
    agent = RNNAgent(8, 3)
    x = jax.random.normal(jax.random.PRNGKey(1), (1, 6, 2, 5))
    params = agent.init(jax.random.PRNGKey(0), jnp.zeros((1, 8)), x[0, 0])
    resets = jnp.zeros((1, 6), bool).at[0, 2].set(True)
    joined = unroll(agent, params, x, h0=jnp.ones((1, 2, 8)), resets=resets)
    np.testing.assert_allclose(joined[:, 2:], unroll(agent, params, x[:, 2:]), rtol=1e-5, atol=1e-6)


def test_the_belief_history_unrolls_as_its_step_by_step_scan_with_its_gradients():
    from jlmarl.nets.belief import BeliefModel, init_belief, unroll_history

    model = BeliefModel(label_dim=2, hidden_dim=8)
    params = init_belief(model, jax.random.PRNGKey(0), 5)
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 6, 2, 5))

    def scanned(p):
        def step(h, xt):
            h = model.apply(p, h, xt, method=BeliefModel.step)
            return h, h

        _, hs = jax.lax.scan(step, jnp.zeros((3, 2, 8)), jnp.swapaxes(x, 0, 1))
        return jnp.swapaxes(hs, 0, 1)

    @jax.jit  # one compile for both unrolls and both gradients
    def both(p):
        fast = jax.value_and_grad(lambda q: unroll_history(model, q, x).sum())
        slow = jax.value_and_grad(lambda q: scanned(q).sum())
        return unroll_history(model, p, x), scanned(p), fast(p)[1], slow(p)[1]

    h_fast, h_slow, g_fast, g_slow = both(params)
    np.testing.assert_allclose(h_fast, h_slow, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_slow), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_the_written_out_gru_gradient_equals_autodiff_of_the_scan():
    from jlmarl.nets.recurrent import _gru_steps, gru_scan

    k = jax.random.split(jax.random.PRNGKey(0), 5)
    pre = jax.random.normal(k[0], (5, 2, 3, 12))  # [T, B, n, 3H], H = 4
    h0 = jax.random.normal(k[1], (2, 3, 4))
    keep = jnp.ones((5, 2, 1, 1)).at[2, 1].set(0.0)  # a new episode inside the second row
    w_h, b_hn = 0.5 * jax.random.normal(k[2], (4, 12)), jax.random.normal(k[3], (4,))
    b_i = jax.random.normal(jax.random.fold_in(k[4], 1), (12,))
    weights = jax.random.normal(k[4], (2, 5, 2, 3, 4))  # cotangents on both outputs

    def loss(scan):
        def f(pre, h0, w_h, b_hn, b_i):
            h_in, hs = scan(pre, h0, keep, w_h, b_hn, b_i)[:2]
            return (weights[0] * h_in).sum() + (weights[1] * jnp.tanh(hs)).sum()

        return f

    args = (pre, h0, w_h, b_hn, b_i)
    np.testing.assert_allclose(loss(gru_scan)(*args), loss(_gru_steps)(*args), rtol=1e-6)
    # the input biases act as part of the input side: b_i inside equals pre + b_i outside
    np.testing.assert_allclose(
        loss(gru_scan)(*args), loss(gru_scan)(pre + b_i, h0, w_h, b_hn, 0 * b_i), rtol=1e-6
    )
    written = jax.grad(loss(gru_scan), argnums=(0, 1, 2, 3, 4))(*args)
    autodiff = jax.grad(loss(_gru_steps), argnums=(0, 1, 2, 3, 4))(*args)
    for a, b in zip(written, autodiff, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_gaussian_head_log_variance_is_clipped_so_draws_stay_finite():
    # Inputs of 1e4 drive the linear log-variance to thousands: exp() would overflow a draw.
    head = GaussianHead(3, (8,))
    x = jnp.concatenate([jnp.full((1, 4), 1e4), jnp.full((1, 4), -1e4), jnp.zeros((1, 4))])
    params = head.init(jax.random.key(0), x)
    raw = x @ params["params"]["fc0"]["kernel"]  # the unclipped output, by hand
    raw = jax.nn.relu(raw + params["params"]["fc0"]["bias"]) @ params["params"]["logvar"]["kernel"]
    raw = np.asarray(raw + params["params"]["logvar"]["bias"])
    _, logvar = head.apply(params, x)
    np.testing.assert_allclose(logvar, np.clip(raw, *LOGVAR_RANGE), rtol=1e-6)
    assert np.abs(raw).max() > 100  # the scene does reach past the range
    z = sample(jax.random.key(1), jnp.zeros_like(logvar), logvar)
    assert np.isfinite(np.asarray(z)).all() and np.abs(np.asarray(z)).max() < 6 * np.exp(LOGVAR_RANGE[1] / 2)


def test_over_rows_gives_the_direct_values_and_gradients_in_chunks():
    from jlmarl.nets.rows import over_rows

    w = jax.random.normal(jax.random.PRNGKey(0), (4, 8))
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 5, 3, 4))  # [B, T, n, D]
    y = jax.random.normal(jax.random.PRNGKey(2), (6, 5, 3, 8))

    def fn(w, x, y):  # row-wise, two outputs
        h = jnp.tanh(x @ w) * y
        return h.sum(-1), h

    def loss(w, rows):
        s, h = over_rows(lambda x, y: fn(w, x, y), 3, x, y, rows=rows)
        return (s**2).sum() + jnp.sin(h).sum()

    want, want_grad = jax.value_and_grad(loss)(w, 0)
    # 15 rows per episode: 10 rows -> one episode per chunk, 30 -> two (6 = 3 x 2)
    for rows in (10, 30):
        assert "scan" in str(jax.make_jaxpr(lambda w, r=rows: loss(w, r))(w))  # it did chunk
        got, got_grad = jax.value_and_grad(loss)(w, rows)
        np.testing.assert_allclose(got, want, rtol=1e-5)
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-6)
    s, h = over_rows(lambda x, y: fn(w, x, y), 3, x, y, rows=30)
    assert s.shape == (6, 5, 3) and h.shape == (6, 5, 3, 8)


def test_the_sale_agents_q_adds_the_per_action_output_on_h_to_the_sale_head():
    """history_head: Q_i(a) = SALE head(a) + (W h + b)[a], W, b the `fc2` Dense on the new
    hidden state; the SALE head is the same function with or without it."""
    from jlmarl.nets.sale import SaleAgent

    with_h, without = (
        SaleAgent(16, 5, obs_dim=6, embed_dim=4, q_hidden=8, history_head=f) for f in (True, False)
    )
    x = jax.random.normal(jax.random.PRNGKey(3), (7, 6 + 5 + 3 + with_h.feature_width()))
    h0 = jax.random.normal(jax.random.PRNGKey(4), (7, 16))
    params = with_h.init(jax.random.PRNGKey(0), h0, x)
    fc2 = params["params"].pop("fc2")
    h, q = with_h.apply({"params": {**params["params"], "fc2": fc2}}, h0, x)
    h_sale, q_sale = without.apply(params, h0, x)
    np.testing.assert_allclose(h, h_sale)
    w = np.asarray(fc2["kernel"], np.float64)
    want = np.asarray(q_sale, np.float64) + np.asarray(h, np.float64) @ w + np.asarray(fc2["bias"])
    np.testing.assert_allclose(q, want, rtol=1e-5, atol=1e-5)


def test_the_per_action_head_unrolls_the_same_in_chunks(monkeypatch):
    from jlmarl.nets import rows
    from jlmarl.nets.sale import SaleAgent

    agent = SaleAgent(16, 5, obs_dim=6, embed_dim=4, q_hidden=8)
    d = 6 + 5 + 3 + agent.feature_width()  # [o, last action, id, z^o, z^oa for every action]
    x = jax.random.normal(jax.random.PRNGKey(3), (4, 7, 3, d))
    params = agent.init(jax.random.PRNGKey(0), jnp.zeros((1, 16)), x[0, 0])

    def run(chunk):
        monkeypatch.setattr(rows, "CPU_ROWS", chunk)  # read while tracing
        q = unroll(agent, params, x)
        grad = jax.grad(lambda p: unroll(agent, p, x).sum())(params)
        return q, grad

    q_whole, g_whole = run(0)
    q_chunks, g_chunks = run(21)  # one episode (7 steps x 3 agents) per chunk
    np.testing.assert_allclose(q_chunks, q_whole, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(g_chunks), jax.tree.leaves(g_whole), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_the_sale_features_are_the_same_in_chunks_of_rows(monkeypatch):
    from jlmarl.nets import rows
    from jlmarl.nets.sale import SaleEncoder, sale_features

    encoder = SaleEncoder(embed_dim=4, hidden=8)
    obs = jax.random.normal(jax.random.PRNGKey(1), (4, 7, 3, 6))  # [B, T, n, O]
    params = encoder.init(jax.random.PRNGKey(0), obs[0], jnp.zeros((7, 3, 5)))

    def run(chunk):
        monkeypatch.setattr(rows, "CPU_ROWS", chunk)  # read while tracing
        return jax.jit(lambda p, o: sale_features(encoder, p, o, 5))(params, obs), jax.make_jaxpr(
            lambda p, o: sale_features(encoder, p, o, 5)
        )(params, obs)

    whole, jaxpr_whole = run(0)
    chunks, jaxpr_chunks = run(21)  # one episode (7 steps x 3 agents) per chunk
    assert "scan" in str(jaxpr_chunks) and "scan" not in str(jaxpr_whole)
    assert whole.shape == (4, 7, 3, 4 * (1 + 5))  # [z^o, z^oa for each of 5 actions]
    np.testing.assert_allclose(chunks, whole, rtol=1e-5, atol=1e-6)
    zo = encoder.apply(params, obs, method=SaleEncoder.embed_state)
    action_2 = jnp.broadcast_to(jnp.eye(5)[2], (4, 7, 3, 5))
    zoa = encoder.apply(params, zo, action_2, method=SaleEncoder.embed_action)
    np.testing.assert_allclose(whole[..., 4 + 2 * 4 : 4 + 3 * 4], zoa, rtol=1e-5, atol=1e-6)  # its slot


def test_elu_is_the_exponential_linear_unit_with_its_gradient():
    x = jnp.array([-90.0, -3.0, -1e-3, 0.0, 1e-3, 2.0, 90.0])
    want = np.where(np.asarray(x) > 0, np.asarray(x), np.expm1(np.asarray(x, np.float64)))
    np.testing.assert_allclose(elu(x), want, rtol=0, atol=2e-7)
    grad = jax.vmap(jax.grad(elu))(x)
    # d/dx: 1 for x >= 0 (jax.nn.elu's 1 at 0), exp(x) below
    want_grad = np.where(np.asarray(x) >= 0, 1.0, np.exp(np.asarray(x, np.float64)))
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(grad, jax.vmap(jax.grad(jax.nn.elu))(x), rtol=1e-6)


def test_a_one_hot_tail_dense_is_the_dense_of_the_concatenation_with_its_parameters():
    x = jnp.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])  # two rows, 3 features; 2 actions
    tail = OneHotTailDense(features=4, n=2)
    params = tail.init(jax.random.key(0), x)
    kernel, bias = params["params"]["kernel"], params["params"]["bias"]
    assert kernel.shape == (5, 4) and bias.shape == (4,)  # a Dense's over 3 + 2 inputs
    every = tail.apply(params, x)  # [2 rows, 2 actions, 4]
    given = tail.apply(params, x, jnp.array([[[0.0, 1.0]], [[1.0, 0.0]]]))  # one given one-hot per row
    for row in range(2):
        for action in range(2):
            expected = x[row] @ kernel[:3] + kernel[3 + action] + bias  # by hand: [x, e_a] @ K + b
            np.testing.assert_allclose(every[row, action], expected, rtol=1e-6)
    np.testing.assert_allclose(given[:, 0], every[[0, 1], [1, 0]], rtol=1e-6)
    # The same parameters in a plain Dense over [x, onehot] give the same numbers.
    dense = nn.Dense(4).apply(params, jnp.concatenate([x, jnp.array([[0.0, 1.0], [0.0, 1.0]])], -1))
    np.testing.assert_allclose(dense, every[:, 1], rtol=1e-6)


def test_an_mlp_over_every_one_hot_equals_the_mlp_over_each_concatenation():
    mlp = MLP((8, 3), activation=nn.elu, torch_init=True)
    z = jax.random.normal(jax.random.key(1), (5, 4))
    params = mlp.init(jax.random.key(2), jnp.zeros((1, 4 + 6)))
    every = mlp.apply(params, z, one_hot_tail=6)  # [5, 6, 3]
    eye = jnp.broadcast_to(jnp.eye(6), (5, 6, 6))
    direct = mlp.apply(params, jnp.concatenate([jnp.broadcast_to(z[:, None], (5, 6, 4)), eye], -1))
    np.testing.assert_allclose(every, direct, rtol=1e-5, atol=1e-6)
