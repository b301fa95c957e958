"""Matrix-product FLOPs of a JAX function, counted on its jaxpr.

XLA's `compiled.cost_analysis()` counts a while loop's body once, whatever its trip count
(on jax 0.10.2's CPU backend: a lax.scan of 50 matmuls reports the FLOPs of one), so every
recurrent unroll's per-step products go missing from it. This counter walks the jaxpr
instead: each dot_general is 2 x batch x M x N x K, a scan body counts `length` times, a
cond its most expensive branch, every other nested jaxpr (jit, remat, custom_vjp, ...)
once. A while loop's trip count is not known before it runs: its body counts once and
`unbounded_loops` says how many such loops there were.

Only matrix products are counted (the work a matmul peak is measured on, for a roofline);
elementwise ops are left out.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
from jax.extend import core as jex_core


@dataclasses.dataclass(frozen=True)
class FlopCount:
    by_scope: dict[str, float]  # the op's name stack (JAX's scopes, Flax module names; "scan"
    # or "while" where it sits in a loop body) -> FLOPs
    unbounded_loops: int  # while loops whose body was counted once

    @property
    def total(self) -> float:
        return sum(self.by_scope.values())


def dot_general_flops(lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], dimension_numbers) -> int:
    """2 x batch x M x N x K for lax.dot_general's shapes and dimension numbers."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    batch = math.prod(lhs_shape[i] for i in lhs_batch)
    k = math.prod(lhs_shape[i] for i in lhs_contract)
    m = math.prod(d for i, d in enumerate(lhs_shape) if i not in lhs_contract and i not in lhs_batch)
    n = math.prod(d for i, d in enumerate(rhs_shape) if i not in rhs_contract and i not in rhs_batch)
    return 2 * batch * m * n * k


def _sub_jaxprs(value: Any) -> list:
    if isinstance(value, jex_core.ClosedJaxpr):
        return [value.jaxpr]
    if isinstance(value, jex_core.Jaxpr):
        return [value]
    if isinstance(value, tuple | list):
        return [j for v in value for j in _sub_jaxprs(v)]
    return []


def _walk(jaxpr, scale: float, scope: str, acc: dict, loops: list) -> None:
    for eqn in jaxpr.eqns:
        name = f"{scope}/{eqn.source_info.name_stack}".strip("/")
        prim = eqn.primitive.name
        if prim == "dot_general":
            lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
            acc[name] += scale * dot_general_flops(lhs, rhs, eqn.params["dimension_numbers"])
        elif prim == "cond":
            branches = []
            for branch in eqn.params["branches"]:
                sub = collections.defaultdict(float)
                _walk(branch.jaxpr, scale, name, sub, loops)
                branches.append(sub)
            for k, v in max(branches, key=lambda b: sum(b.values())).items():
                acc[k] += v
        else:
            inner = scale * eqn.params["length"] if prim == "scan" else scale
            if prim == "while":
                loops.append(name)
            # a loop's ops are scoped under it: a Flax module applied in a scan loses its name
            inner_scope = f"{name}/{prim}" if prim in ("scan", "while") else name
            for sub in (j for v in eqn.params.values() for j in _sub_jaxprs(v)):
                _walk(sub, inner, inner_scope, acc, loops)


def count_matmul_flops(fn: Callable, *args, **kwargs) -> FlopCount:
    """The matrix-product FLOPs of one call fn(*args, **kwargs) (traced, not run)."""
    closed = jax.make_jaxpr(fn)(*args, **kwargs)
    acc: dict[str, float] = collections.defaultdict(float)
    loops: list[str] = []
    _walk(closed.jaxpr, 1.0, "", acc, loops)
    return FlopCount(dict(acc), len(loops))
