"""Register tiles of the E-step's log densities, as Numba intrinsics: the
squared distances of the diagonal and spherical types (:func:`_make_tile`)
and the full type's triangular products (:func:`_make_tri_tile`), each for
a few components or columns x a few vectors of points, summed over the
features in registers.

Why intrinsics: the loops Numba can express keep these sums in memory.  With
the points innermost (the axis LLVM vectorises), each group of features
loads and stores the partial sums again, and every point's sum is a chain
of dependent multiply-adds through memory: such loops ran at about one
multiply-add per cycle (Zen 3, AVX2 code; two pipes allow two, beside two
adders).  Here the sums stay in registers while a loop runs over the
features (one vector load per vector of points, one broadcast per
component or column), and are stored once.

Each sum is a chain of multiply-adds in a fixed order (the functions'
docstrings say which); the ``*_rows`` functions compute the points the tiles
leave (a block whose size is no multiple of a tile's width) with the same
operations in the same order, so every point gets the same bits whichever
path computes it, and results are the same for any block boundaries and
thread count.

The intrinsics do no bounds checks: their callers pass arrays whose shapes
hold every index the tiles read (rows 0 .. d - 1 and columns 0 .. nb - 1 of
``diff``; rows k .. k + C - 1 of the parameters; the output's rows and
columns 0 .. nb - 1).  The vectors have the target's width (AVX-512: 512
bits, else 256).
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._machinery import FASTMATH, HELPER_CACHE, target_has_avx512
from ._math import _fma


def _lanes(dtype):
    """Lanes of one vector register of the target for ``dtype``."""
    bits = 512 if target_has_avx512() else 256
    return bits // (64 if dtype == types.float64 else 32)


class _Gen:
    """Helpers of one intrinsic's code generation: addresses, vector loads
    and stores, broadcasts, llvm.fma on vectors."""

    def __init__(self, context, builder, dtype):
        self.b = builder
        self.elt = context.get_data_type(dtype)
        self.size = context.get_abi_sizeof(self.elt)
        self.lanes = _lanes(dtype)
        self.vec = ir.VectorType(self.elt, self.lanes)
        self.intp = context.get_value_type(types.intp)
        self.i8p = ir.IntType(8).as_pointer()
        self.context = context
        self.zero = ir.Constant(self.vec, [self.elt(0.0)] * self.lanes)
        self.zero_mask = ir.Constant(ir.VectorType(ir.IntType(32), self.lanes),
                                     [0] * self.lanes)

    def n(self, v):
        return self.intp(v)

    def array(self, ty, val):
        """(byte pointer to element 0, byte strides, shape) of an array."""
        a = self.context.make_array(ty)(self.context, self.b, val)
        strides = [self.b.extract_value(a.strides, i) for i in range(ty.ndim)]
        shape = [self.b.extract_value(a.shape, i) for i in range(ty.ndim)]
        return self.b.bitcast(a.data, self.i8p), strides, shape

    def at(self, base, *offsets):
        off = offsets[0]
        for o in offsets[1:]:
            off = self.b.add(off, o)
        return self.b.gep(base, [off])

    def load_vec(self, ptr):
        return self.b.load(self.b.bitcast(ptr, self.vec.as_pointer()), align=self.size)

    def store_vec(self, val, ptr):
        self.b.store(val, self.b.bitcast(ptr, self.vec.as_pointer()), align=self.size)

    def splat(self, ptr, negate=False):
        s = self.b.load(self.b.bitcast(ptr, self.elt.as_pointer()))
        if negate:
            s = self.b.fneg(s)
        return self.splat_value(s)

    def splat_value(self, s):
        """A scalar (of the data's type or float64) broadcast to a vector of
        as many lanes as the data's vectors."""
        undef = ir.Constant(ir.VectorType(s.type, self.lanes), ir.Undefined)
        return self.b.shuffle_vector(self.b.insert_element(undef, s, self.n(0)), undef,
                                     self.zero_mask)

    def fma(self, a, b, c):
        """llvm.fma on vectors of a's type."""
        suffix = "f64" if a.type.element == ir.DoubleType() else "f32"
        fn = cgutils.get_or_insert_function(self.b.module, ir.FunctionType(a.type, [a.type] * 3),
                                            f"llvm.fma.v{self.lanes}{suffix}")
        return self.b.call(fn, [a, b, c])

    def accumulators(self, count):
        return [cgutils.alloca_once(self.b, self.vec) for _ in range(count)]

    def wide(self, x):
        """A scalar or vector of the data's type as float64."""
        if self.elt == ir.DoubleType():
            return x
        ty = ir.DoubleType()
        if isinstance(x.type, ir.VectorType):
            ty = ir.VectorType(ty, self.lanes)
        return self.b.fpext(x, ty)

    def affine(self, s, mh, c):
        """fma(s, mh, c) for a vector s of the data's type and float64 vectors
        mh, c, formed in float64 and rounded once to the data's type (as the
        scalar code does it: a float32 sum promoted to the float64 log_norm)."""
        if self.elt == ir.DoubleType():
            return self.fma(s, mh, c)
        return self.b.fptrunc(self.fma(self.wide(s), mh, c), self.vec)


def _c_arrays(dtype, *arrays):
    return all(isinstance(a, types.Array) and a.layout == "C" and a.dtype == dtype
               for a in arrays)


def _make_tile(scaled, C, V):
    """An intrinsic tile(diff, nb, cen, prec, k, log_norm, dist, lp) -> rows:
    for components k .. k + C - 1 and the points 0 .. rows - 1 (rows: nb
    rounded down to a multiple of V vectors), the squared distance s = the
    sum over i = 0 .. d - 1 of fma(t_i, t_i, s) from 0, with

    - spherical: t_i = diff[i, r] - cen[k + c, i]; dist[k + c, r] = s and
      lp[k + c, r] = fma(s, -h, log_norm[k + c]), h = 0.5 p^2, p =
      prec[k + c, 0];
    - diagonal (``scaled``): t_i = fma(diff[i, r], prec[k + c, i],
      -cen[k + c, i]); lp[k + c, r] = fma(s, -0.5, log_norm[k + c]) (dist is
      not written).

    The last multiply-add is formed in float64 (log_norm is float64) and
    rounded once to the data's type."""

    @intrinsic
    def tile(typingctx, diff, nb, cen, prec, k, log_norm, dist, lp):
        if not (isinstance(diff, types.Array) and diff.dtype in (types.float32, types.float64)
                and _c_arrays(diff.dtype, diff, cen, prec, dist, lp)
                and diff.ndim == cen.ndim == prec.ndim == dist.ndim == lp.ndim == 2
                and isinstance(log_norm, types.Array) and log_norm.ndim == 1
                and log_norm.dtype in (types.float32, types.float64)
                and isinstance(nb, types.Integer) and isinstance(k, types.Integer)):
            return None
        sig = types.intp(diff, types.intp, cen, prec, types.intp, log_norm, dist, lp)

        def codegen(context, builder, signature, args):
            a_diff, a_nb, a_cen, a_prec, a_k, a_ln, a_dist, a_lp = args
            g = _Gen(context, builder, signature.args[0].dtype)
            n = g.n
            step = V * g.lanes
            x_base, (x_stride, _), _ = g.array(signature.args[0], a_diff)
            c_base, (c_stride, _), (_, d) = g.array(signature.args[2], a_cen)
            p_base, (p_stride, _), _ = g.array(signature.args[3], a_prec)
            d_base, (d_stride, _), _ = g.array(signature.args[6], a_dist)
            l_base, (l_stride, _), _ = g.array(signature.args[7], a_lp)
            rows = builder.sub(a_nb, builder.srem(a_nb, n(step)))
            c_base = g.at(c_base, builder.mul(a_k, c_stride))
            p_base = g.at(p_base, builder.mul(a_k, p_stride))
            # per component, as float64: log_norm, and -h
            cks, mhs = [], []
            for c in range(C):
                cks.append(g.splat_value(_log_norm_at(g, signature.args[5], a_ln,
                                                  builder.add(a_k, n(c)))))
                if scaled:
                    mhs.append(g.splat_value(ir.DoubleType()(-0.5)))
                else:
                    ptr = builder.bitcast(g.at(p_base, builder.mul(n(c), p_stride)),
                                          g.elt.as_pointer())
                    p = builder.load(ptr)
                    h = g.wide(builder.fmul(p, p))
                    mhs.append(g.splat_value(builder.fmul(h, ir.DoubleType()(-0.5))))
            accs = [g.accumulators(V) for _ in range(C)]
            with cgutils.for_range_slice(builder, n(0), rows, n(step), g.intp) as (r, _):
                col = builder.mul(r, n(g.size))
                for c in range(C):
                    for v in range(V):
                        builder.store(g.zero, accs[c][v])
                with cgutils.for_range(builder, d, intp=g.intp) as loop:
                    i = loop.index
                    row = g.at(x_base, builder.mul(i, x_stride), col)
                    xv = [g.load_vec(g.at(row, n(v * g.lanes * g.size))) for v in range(V)]
                    ioff = builder.mul(i, n(g.size))
                    for c in range(C):
                        cv = g.splat(g.at(c_base, builder.mul(n(c), c_stride), ioff),
                                     negate=scaled)
                        if scaled:
                            pv = g.splat(g.at(p_base, builder.mul(n(c), p_stride), ioff))
                        for v in range(V):
                            t = g.fma(xv[v], pv, cv) if scaled else builder.fsub(xv[v], cv)
                            acc = accs[c][v]
                            builder.store(g.fma(t, t, builder.load(acc)), acc)
                for c in range(C):
                    kc = builder.add(a_k, n(c))
                    lrow = g.at(l_base, builder.mul(kc, l_stride), col)
                    drow = g.at(d_base, builder.mul(kc, d_stride), col)
                    for v in range(V):
                        s = builder.load(accs[c][v])
                        off = n(v * g.lanes * g.size)
                        if not scaled:
                            g.store_vec(s, g.at(drow, off))
                        g.store_vec(g.affine(s, mhs[c], cks[c]), g.at(lrow, off))
            return rows

        return sig, codegen

    return tile


def _log_norm_at(g, ty, val, k):
    """log_norm[k] (an array of ``ty``) as float64."""
    base, _, _ = g.array(ty, val)
    elt = g.context.get_data_type(ty.dtype)
    size = g.n(g.context.get_abi_sizeof(elt))
    x = g.b.load(g.b.bitcast(g.at(base, g.b.mul(k, size)), elt.as_pointer()))
    if elt != ir.DoubleType():
        x = g.b.fpext(x, ir.DoubleType())
    return x


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _distances_rows(diff, lo, nb, k, cen, prec, log_norm, dist, lp, scaled):
    """dist[k, lo:nb] (spherical) and lp[k, lo:nb] as the tiles of
    :func:`_make_tile` compute them (the same operations in the same order),
    for the points and components they leave."""
    d = cen.shape[1]
    if scaled:
        mh = -0.5
    else:
        p = prec[k, 0]
        mh = -0.5 * np.float64(p * p)
    c = np.float64(log_norm[k])
    for r in range(lo, nb):
        lp[k, r] = 0.0
    for i in range(d):
        m = cen[k, i]
        q = prec[k, i]
        for r in range(lo, nb):
            x = diff[i, r]
            t = _fma(x, q, -m) if scaled else x - m
            lp[k, r] = _fma(t, t, lp[k, r])
    for r in range(lo, nb):
        s = lp[k, r]
        if not scaled:
            dist[k, r] = s
        lp[k, r] = _fma(np.float64(s), mh, c)


def _make_tri_tile(V):
    """An intrinsic tri(diff, nb, proj, P, k, log_norm, lp) -> rows: for the
    points 0 .. rows - 1 (nb rounded down to a multiple of V vectors),
    lp[k, r] = fma(maha, -0.5, log_norm[k]), where maha = fma(y_j, y_j, maha)
    over j = 0 .. d - 1 from 0 and y_j = fma(diff[i, r], P[k, i, j], y_j) over
    i = 0 .. j from -proj[k, j] (P upper triangular); the last multiply-add
    is formed in float64 (log_norm is float64) and rounded once.

    Columns go four at a time (4 x V sums in registers; P[k, i, j..j + 3] is
    one broadcast each), over the rows i <= j + 3: below the diagonal P is
    zero and adds exact zeros (diff is finite), so the sums are those over
    i <= j; the last d % 4 columns one at a time."""

    @intrinsic
    def tri(typingctx, diff, nb, proj, P, k, log_norm, lp):
        if not (isinstance(diff, types.Array) and diff.dtype in (types.float32, types.float64)
                and _c_arrays(diff.dtype, diff, proj, P, lp)
                and diff.ndim == proj.ndim == lp.ndim == 2 and P.ndim == 3
                and isinstance(log_norm, types.Array) and log_norm.ndim == 1
                and log_norm.dtype in (types.float32, types.float64)
                and isinstance(nb, types.Integer) and isinstance(k, types.Integer)):
            return None
        sig = types.intp(diff, types.intp, proj, P, types.intp, log_norm, lp)

        def codegen(context, builder, signature, args):
            a_diff, a_nb, a_proj, a_P, a_k, a_ln, a_lp = args
            g = _Gen(context, builder, signature.args[0].dtype)
            n = g.n
            size = n(g.size)
            step = V * g.lanes
            x_base, (x_stride, _), _ = g.array(signature.args[0], a_diff)
            j_base, (j_stride, _), (_, d) = g.array(signature.args[2], a_proj)
            P_base, (Pk_stride, Pi_stride, _), _ = g.array(signature.args[3], a_P)
            lp_base, (lp_stride, _), _ = g.array(signature.args[6], a_lp)
            rows = builder.sub(a_nb, builder.srem(a_nb, n(step)))
            j_base = g.at(j_base, builder.mul(a_k, j_stride))
            P_base = g.at(P_base, builder.mul(a_k, Pk_stride))
            # the last multiply-add in float64 (log_norm is float64)
            lnv = g.splat_value(_log_norm_at(g, signature.args[5], a_ln, a_k))
            half = g.splat_value(ir.DoubleType()(-0.5))
            d4 = builder.sub(d, builder.srem(d, n(4)))
            maha = g.accumulators(V)
            ys = [g.accumulators(V) for _ in range(4)]

            def columns(r_off, j, width):
                """Columns j .. j + width - 1 into maha, for the points at
                byte offset r_off."""
                for c in range(width):
                    yc = g.splat(g.at(j_base, builder.mul(builder.add(j, n(c)), size)),
                                 negate=True)
                    for v in range(V):
                        builder.store(yc, ys[c][v])
                with cgutils.for_range(builder, builder.add(j, n(width)), intp=g.intp) as il:
                    i = il.index
                    row = g.at(x_base, builder.mul(i, x_stride), r_off)
                    xv = [g.load_vec(g.at(row, n(v * g.lanes * g.size))) for v in range(V)]
                    prow = g.at(P_base, builder.mul(i, Pi_stride), builder.mul(j, size))
                    for c in range(width):
                        pv = g.splat(g.at(prow, n(c * g.size)))
                        for v in range(V):
                            builder.store(g.fma(xv[v], pv, builder.load(ys[c][v])), ys[c][v])
                for c in range(width):
                    for v in range(V):
                        y = builder.load(ys[c][v])
                        builder.store(g.fma(y, y, builder.load(maha[v])), maha[v])

            with cgutils.for_range_slice(builder, n(0), rows, n(step), g.intp) as (r, _):
                r_off = builder.mul(r, size)
                for v in range(V):
                    builder.store(g.zero, maha[v])
                with cgutils.for_range_slice(builder, n(0), d4, n(4), g.intp) as (j, _):
                    columns(r_off, j, 4)
                with cgutils.for_range_slice(builder, d4, d, n(1), g.intp) as (j, _):
                    columns(r_off, j, 1)
                out = g.at(lp_base, builder.mul(a_k, lp_stride), r_off)
                for v in range(V):
                    g.store_vec(g.affine(builder.load(maha[v]), half, lnv),
                                g.at(out, n(v * g.lanes * g.size)))
            return rows

        return sig, codegen

    return tri


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _tri_rows(diff, lo, nb, k, proj, P, log_norm, lp):
    """lp[k, lo:nb] as the tiles of :func:`_make_tri_tile` compute it (the
    same operations in the same order), for the points they leave."""
    d = proj.shape[1]
    c = np.float64(log_norm[k])
    for r in range(lo, nb):
        maha = diff[0, r] - diff[0, r]  # a zero of the data's type (diff is finite)
        for j in range(d):
            y = -proj[k, j]
            for i in range(j + 1):
                y = _fma(diff[i, r], P[k, i, j], y)
            maha = _fma(y, y, maha)
        lp[k, r] = _fma(np.float64(maha), -0.5, c)


_tri_tile = _make_tri_tile(2)


@njit(cache=HELPER_CACHE, fastmath=FASTMATH, error_model="numpy")
def _logprob_tri_tiles(diff, nb, proj, P, log_norm, lp):
    """lp[k, :nb] = log_norm[k] - 0.5 ||y_k||^2 for every k (the triangular
    products of :func:`._blocks._logprob_block_full` on centred rows diff):
    register tiles of four columns x two vectors of points, the points they
    leave by :func:`_tri_rows`.  1.2-1.35x as fast as the two-column loops
    through memory of :mod:`._triangular` (Zen 3, AVX2 code, one thread:
    d = 16 38.1 -> 30.8 cycles per point and component, d = 64 467 -> 349,
    float32 d = 16 18.4 -> 14.9)."""
    for k in range(proj.shape[0]):
        rows = _tri_tile(diff, nb, proj, P, k, log_norm, lp)
        if rows < nb:
            _tri_rows(diff, rows, nb, k, proj, P, log_norm, lp)
