"""The matmul FLOP counter (jlmarl/core/flops.py) against counts by hand: a product, a
batched product, a scan (counted per step, unlike XLA's cost analysis), a gradient, a cond,
nested scans, and the scopes Flax gives."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jlmarl.core.flops import count_matmul_flops

B, M, K, N, T = 3, 5, 7, 11, 13


def test_one_product_and_a_batched_one():
    x, w = jnp.ones((M, K)), jnp.ones((K, N))
    assert count_matmul_flops(jnp.dot, x, w).total == 2 * M * K * N
    xb, wb = jnp.ones((B, M, K)), jnp.ones((B, K, N))
    assert count_matmul_flops(jnp.matmul, xb, wb).total == 2 * B * M * K * N


def test_scan_bodies_count_once_per_step_and_nested_scans_multiply():
    w = jnp.ones((K, K))

    def unroll(h):
        return jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), h, None, length=T)[0]

    count = count_matmul_flops(unroll, jnp.ones((M, K)))
    assert count.total == T * 2 * M * K * K
    assert count.unbounded_loops == 0

    def twice(h):
        return jax.lax.scan(lambda c, _: (unroll(c), None), h, None, length=4)[0]

    assert count_matmul_flops(twice, jnp.ones((M, K))).total == 4 * T * 2 * M * K * K


def test_a_gradient_counts_the_backward_products():
    """d/dw sum(x @ w): the forward product and x^T g for w's gradient, both 2 M K N (no
    gradient is asked for x, so none is computed)."""
    x, w = jnp.ones((M, K)), jnp.ones((K, N))
    grad = jax.grad(lambda w: (x @ w).sum())
    assert count_matmul_flops(grad, w).total == 2 * (2 * M * K * N)


def test_cond_counts_its_most_expensive_branch_and_while_is_flagged():
    x, w = jnp.ones((M, K)), jnp.ones((K, K))
    both = lambda p, x: jax.lax.cond(p, lambda x: x @ w @ w, lambda x: x @ w, x)  # noqa: E731
    assert count_matmul_flops(both, True, x).total == 2 * (2 * M * K * K)
    loop = lambda x: jax.lax.while_loop(lambda c: c.sum() < 1e9, lambda c: c @ w, x)  # noqa: E731
    count = count_matmul_flops(loop, x)
    assert count.total == 2 * M * K * K and count.unbounded_loops == 1


def test_scopes_name_the_flax_modules():
    class Two(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(N, name="second")(nn.Dense(K, name="first")(x))

    net = Two()
    params = net.init(jax.random.PRNGKey(0), jnp.ones((M, K)))
    count = count_matmul_flops(net.apply, params, jnp.ones((M, K)))
    by_layer = {scope.rsplit("/", 1)[-1]: f for scope, f in count.by_scope.items()}
    assert by_layer == {"first": 2 * M * K * K, "second": 2 * M * K * N}
