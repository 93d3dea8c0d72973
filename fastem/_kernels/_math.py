"""Scalar exp and log without calls or branches, so that the loops calling
them vectorise; the bit casts they are built from.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

from ._machinery import FASTMATH, HELPER_CACHE

@intrinsic
def _i64_as_f64(typingctx, x):
    """The float64 whose bits are those of the int64 x (a register move)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return sig, codegen


@intrinsic
def _f64_as_i64(typingctx, x):
    """The int64 whose bits are those of the float64 x (a register move)."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return sig, codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c with one rounding (llvm.fma: a vfmadd instruction where the
    target has FMA).  Unlike ``a * b + c`` under the 'reassoc' fast-math flag,
    LLVM does not regroup it with the operations around it."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None
    sig = a(a, a, a)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return sig, codegen


# exp(x) = 2**n * p(r), x = n log 2 + r, |r| <= log(2) / 2: Cody-Waite range
# reduction and a degree-13 Taylor polynomial, 2**n assembled from its bits.
# Scalar code without calls or branches, so that the loops calling it
# vectorise (math.exp is a scalar libm call).  Within 1 ulp of the exact
# value (checked against numpy's exp on [-708, 0] in the tests).  The two
# steps of the reduction are explicit FMAs (_fma): written as
# (v - n ln2_hi) - n ln2_lo, the 'reassoc' fast-math flag let LLVM fold
# them into v - n (ln2_hi + ln2_lo), one rounded constant, and the results
# were off by up to 213 ulp (n up to 1022 times the constant's rounding).
# The polynomial is 1 + r + r^2 q(r), q of degree 11 evaluated by Estrin's
# scheme (three levels of independent multiply-adds instead of a chain of
# thirteen): the loops calling exp are bound by the chain's latency, and
# this ran 5-10% faster than Horner's rule with AVX2 code (Zen 3).  Results below the smallest normal float64
# (x < -708.396, exp(x) < 2.2e-308) are 0, as for float32 below its smallest
# normal: subnormal arithmetic takes a microcode assist per operation on
# x86, and rows far from a component give many such responsibilities (the
# diagonal and spherical float64 iterations of `fastem bench` ran 12-18%
# slower with them); a subnormal responsibility changes no statistic it
# enters by more than 2.2e-308 times the row's values.  Since only normal
# results are kept, the argument is clamped at -708.396, so n >= -1022 and
# 2**n is one normal number made from its exponent bits.
_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
_LN2_HI = 0.6931471803691238      # fdlibm's ln2_hi: n * _LN2_HI is exact
_LN2_LO = 1.9082149292705877e-10  # log(2) - _LN2_HI
_EXP_MIN_NORMAL = -708.3964185322641  # log of the smallest normal float64 (-1022 log 2)
_SQRT2 = 1.4142135623730951
_MANTISSA = (1 << 52) - 1
# 2**52 + 1023: for an integer-valued n in [-1023, 1024), n + _EXP_MAGIC is
# exact and its low mantissa bits hold n + 1023 (the float64 exponent field of
# 2**n), so no float64 <-> int64 conversion is needed.  AVX2 has none for
# vectors (AVX-512DQ has): LLVM would convert lane by lane, and the loops that
# call exp ran 1.3-2.3x slower with AVX2 code than with AVX-512 code on the
# same Zen 4 core.
_EXP_MAGIC = 4503599627371519.0
_TWO52_BITS = 0x4330000000000000  # the bits of 2**52


@intrinsic
def _i32_as_f32(typingctx, x):
    """The float32 whose bits are those of the int32 x (a register move)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return sig, codegen


def _exp_neg(x):
    """exp(x) for x <= 0 where the result is a normal number; 0 below the
    smallest normal (float64: x <= -708.396; float32: x <= -87, see
    _EXP_MIN_F32), for -inf and for NaN (subnormal results are flushed: see
    the comment above _LOG2E).

    In compiled code this is the branch-free, vectorisable version for the
    argument's precision (``_exp_neg_f64``, or ``_exp_neg_f32`` for float32);
    called from Python it uses math.exp.
    """
    return math.exp(x) if x > _EXP_MIN_NORMAL else 0.0


def _exp_neg_f64(x):
    v = x if x > _EXP_MIN_NORMAL else _EXP_MIN_NORMAL
    nf = np.floor(v * _LOG2E + 0.5)
    red = _fma(-nf, _LN2_LO, _fma(-nf, _LN2_HI, v))
    r2 = red * red
    r4 = r2 * r2
    r8 = r4 * r4
    # q(r) = sum_{i=2}^{13} r^(i-2) / i!: pairs, then pairs of pairs
    a0 = 1.0 / 2.0 + red * (1.0 / 6.0)
    a1 = 1.0 / 24.0 + red * (1.0 / 120.0)
    a2 = 1.0 / 720.0 + red * (1.0 / 5040.0)
    a3 = 1.0 / 40320.0 + red * (1.0 / 362880.0)
    a4 = 1.0 / 3628800.0 + red * (1.0 / 39916800.0)
    a5 = 1.0 / 479001600.0 + red * (1.0 / 6227020800.0)
    b0 = a0 + a1 * r2
    b1 = a2 + a3 * r2
    b2 = a4 + a5 * r2
    q = (b0 + b1 * r4) + b2 * r8
    # the two largest terms last, so that their rounding dominates
    p = _fma(r2, q, red) + 1.0
    # 2**n from its exponent bits: -1022 <= n <= 0 here (v * _LOG2E >=
    # -1022), a normal number; p * 2**n is normal (>= exp(-708.396)) wherever
    # it is kept, so exact
    # (the bits of nf + _EXP_MAGIC shifted left by 52 keep only n + 1023, in
    # the exponent field: the same 2**n as (int(nf) + 1023) << 52)
    scale = _i64_as_f64(_f64_as_i64(nf + _EXP_MAGIC) << 52)
    return p * scale if x > _EXP_MIN_NORMAL else 0.0


# float32: the same scheme with a degree-7 Taylor polynomial (truncation
# error below 1e-8 relative on |r| <= log(2) / 2) and 2**n from the float32
# exponent bits, 16 lanes per AVX-512 register instead of 8.  A second
# function rather than a generic one: its constants must be float32 values
# for the arithmetic to stay in float32.
_F32 = np.float32
# float32 results below the smallest normal float32 (x <= -87.0) are flushed
# to 0, as float64 ones are: subnormal float32 arithmetic takes a microcode
# assist per operation on x86, and far-away components give many such
# responsibilities (a float32 diagonal fit ran 30% slower with them).
_EXP_MIN_F32 = _F32(-87.0)         # exp(-87) > the smallest normal float32
_LOG2E_F32 = _F32(_LOG2E)
_LN2_HI_F32 = _F32(0.693359375)    # 8 significant bits: n * _LN2_HI_F32 is exact
_LN2_LO_F32 = _F32(0.6931471805599453 - 0.693359375)
_HALF_F32 = _F32(0.5)
_ONE_F32 = _F32(1.0)
_ZERO_F32 = _F32(0.0)
_BIAS_F32 = _F32(127.0)
_MANT_SCALE_F32 = _F32(8388608.0)  # 2**23: (n + 127) * 2**23 is the exponent field
_C2_F32 = _F32(1.0 / 2.0)
_C3_F32 = _F32(1.0 / 6.0)
_C4_F32 = _F32(1.0 / 24.0)
_C5_F32 = _F32(1.0 / 120.0)
_C6_F32 = _F32(1.0 / 720.0)
_C7_F32 = _F32(1.0 / 5040.0)


def _exp_neg_f32(x):
    v = x if x > _EXP_MIN_F32 else _EXP_MIN_F32
    nf = np.floor(v * _LOG2E_F32 + _HALF_F32)
    red = _fma(-nf, _LN2_LO_F32, _fma(-nf, _LN2_HI_F32, v))
    r2 = red * red
    # q(r) = sum_{i=2}^{7} r^(i-2) / i! by Estrin's scheme, as for float64
    q = ((_C2_F32 + red * _C3_F32) + r2 * (_C4_F32 + red * _C5_F32)) \
        + (r2 * r2) * (_C6_F32 + red * _C7_F32)
    p = _fma(r2, q, red) + _ONE_F32
    # -126 <= n <= 0: (n + 127) * 2**23 < 2**31 is exact and fits an int32
    scale = _i32_as_f32(np.int32((nf + _BIAS_F32) * _MANT_SCALE_F32))
    return p * scale if x > _EXP_MIN_F32 else _ZERO_F32


@overload(_exp_neg, inline="always")
def _exp_neg_compiled(x):
    if x == types.float32:
        return _exp_neg_f32
    return _exp_neg_f64


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy", inline="always")
def _log_normal(x):
    """log(x) for a positive, finite, normal float64 x (no calls, no branches).

    x = 2**e * m with m in [sqrt(2)/2, sqrt(2)); log m = 2 atanh(s),
    s = (m - 1) / (m + 1), |s| < 0.172, summed to s**19 (error below 1e-17).
    """
    b = _f64_as_i64(x)
    # the biased exponent b >> 52 (0..2047) as a float64 without a conversion:
    # 2**52 + (b >> 52) from its bits, less 2**52 + 1023 (both exact)
    e = _i64_as_f64((b >> 52) | _TWO52_BITS) - _EXP_MAGIC
    m = _i64_as_f64((b & _MANTISSA) | (1023 << 52))
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1.0 if big else e
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    q = 1.0 / 19.0
    q = q * z + 1.0 / 17.0
    q = q * z + 1.0 / 15.0
    q = q * z + 1.0 / 13.0
    q = q * z + 1.0 / 11.0
    q = q * z + 1.0 / 9.0
    q = q * z + 1.0 / 7.0
    q = q * z + 1.0 / 5.0
    q = q * z + 1.0 / 3.0
    q = q * z + 1.0
    return 2.0 * s * q + e * _LN2
