"""Fused multiply-add inside compiled code: one exact form and one for reductions.

The fused pass over R is bound by its arithmetic (R is in cache at N ≤ 1000): per element
it updates the weight and accumulates two products, six separate multiplies and adds, or
three fused ones. Numba exposes neither form, and the kernels' fastmath flags leave out
``contract`` on purpose (a contraction is the compiler's choice, so two loops evaluating
the same expression could round differently). Hence two LLVM intrinsics:

- :func:`fma`: ``llvm.fma``, always fused, one rounding. Every update of a weight is
  written with it, so the deferred update (inside the next pass) and the immediate one
  (the flush at the end of a block) give the same bits whatever the compiler does.
- :func:`muladd`: ``llvm.fmuladd``, fused where the target has FMA. Only for the
  accumulators of reductions, whose order of summation is the vectoriser's anyway
  (reassociation); LLVM vectorises a reduction through ``fmuladd`` but not through ``fma``.

The Python bodies serve ``NUMBA_DISABLE_JIT=1`` (coverage runs): for float32 they round
once from the exact float64 product, which is the fused result except in rare double-
rounding ties; for float64 they are a plain ``a * b + c``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload


def _unfused(a, b, c):
    if isinstance(a, np.float32) and isinstance(b, np.float32) and isinstance(c, np.float32):
        return np.float32(np.float64(a) * np.float64(b) + np.float64(c))
    return a * b + c


def fma(a: float, b: float, c: float) -> float:
    """``a * b + c`` rounded once (an exact fused multiply-add)."""
    return _unfused(a, b, c)


def muladd(a: float, b: float, c: float) -> float:
    """``a * b + c``, fused or not at the compiler's choice: for reduction accumulators."""
    return _unfused(a, b, c)


def _float_intrinsic(name: str):
    @intrinsic
    def call(typingctx, a, b, c):
        if not all(isinstance(t, types.Float) for t in (a, b, c)):
            return None
        ty = typingctx.unify_types(a, b, c)

        def codegen(context, builder, signature, args):
            lty = context.get_value_type(signature.return_type)
            fnty = ir.FunctionType(lty, [lty, lty, lty])
            fn = builder.module.declare_intrinsic(name, [lty], fnty)
            return builder.call(fn, args)

        return ty(ty, ty, ty), codegen

    return call


_llvm_fma = _float_intrinsic("llvm.fma")
_llvm_fmuladd = _float_intrinsic("llvm.fmuladd")


@overload(fma, inline="always")
def _fma(a, b, c):
    return lambda a, b, c: _llvm_fma(a, b, c)


@overload(muladd, inline="always")
def _muladd(a, b, c):
    return lambda a, b, c: _llvm_fmuladd(a, b, c)
