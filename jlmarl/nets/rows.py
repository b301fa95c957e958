"""Row-wise work in cache-sized chunks.

A head applied to every (episode, step, agent) row of a batch at once makes intermediates
of tens of MB (MMSA's per-action Q head on smax_3m: [128 episodes x 51 steps x 3 agents x
9 actions, 64] floats, 45 MB), and on a CPU a product or an activation over arrays that
leave the cache runs at the speed of memory, not of arithmetic: on our 2-core machine a
[176k, 64] @ [64, 64] product reached 104 GFLOP/s, the same product over 19.6k rows 421.
`over_rows` maps a row-wise function over chunks of the batch (`jax.lax.map`) and, under
differentiation, recomputes each chunk's forward in the backward pass
(`jax.checkpoint`), so that neither pass streams the big intermediates through memory: one
MMSA update, 249 -> 210 ms (benchmarks/results/row_chunks.json). On accelerators, where a
sequential map would only serialise the work, it calls the function once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax

# Rows per chunk on CPU: 1024, 2048 and 4096 are equally fast for MMSA's update (212, 210,
# 211 ms; benchmarks/row_chunks.py); a [2048, 9, 64] float32 intermediate is 4.7 MB.
CPU_ROWS = 2048


def chunk_rows() -> int:
    """Rows per chunk for the backend being compiled for (0: no chunking)."""
    return CPU_ROWS if jax.default_backend() == "cpu" else 0


def over_rows(fn: Callable, lead: int, *xs, rows: int | None = None):
    """fn(*xs) for a function that treats the first `lead` axes of every x as independent
    rows (a batch of [B, T, n, ...] with lead = 3), computed over chunks of whole slices of
    the first axis: the most that fit in `rows` rows (default: chunk_rows()) and divide it
    evenly, so that splitting and joining the chunks moves no data. Same values as fn(*xs)
    up to float rounding. rows = 0, or everything within one chunk: fn(*xs) directly."""
    rows = chunk_rows() if rows is None else rows
    first, per = xs[0].shape[0], math.prod(xs[0].shape[1:lead])
    k = max([d for d in range(1, first + 1) if first % d == 0 and d * per <= rows], default=1)
    if rows <= 0 or k == first:
        return fn(*xs)
    chunks = tuple(x.reshape(first // k, k, *x.shape[1:]) for x in xs)
    out = jax.lax.map(lambda args: jax.checkpoint(fn)(*args), chunks)
    return jax.tree.map(lambda y: y.reshape(first, *y.shape[2:]), out)
