"""A 4 x 4 transposed copy for :func:`._blocks._load_block`: four rows of X
read as four vectors, transposed in registers by eight shuffles, and stored
as four vectors along the points of the block.

Written as a Numba intrinsic because LLVM does not find this form itself:
the copy element by element (one scalar load and one scalar store per
value) took 1.3 cycles per value with the rows in L2 and 2.0 from memory
(Zen 3, AVX2 code, d = 16); the shuffled copy 0.66 and 1.46.  The LLVM IR
(``shufflevector`` on vectors of four) is the same for every instruction set:
LLVM picks the target's shuffles.  A pure copy: every value is moved, never
computed, so results are bitwise those of the element-by-element copy.

The intrinsic does no bounds checks: its caller guarantees that rows
``row .. row + 3`` and columns ``col .. col + 3`` of ``src`` and rows
``i .. i + 3`` and columns ``r .. r + 3`` of ``dst`` exist.
"""

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


def _shuffle(builder, a, b, mask):
    m = ir.Constant(ir.VectorType(ir.IntType(32), 4), [ir.IntType(32)(v) for v in mask])
    return builder.shuffle_vector(a, b, m)


@intrinsic
def _transpose4(typingctx, src, row, col, dst, i, r):
    """dst[i + q, r + p] = src[row + p, col + q] for p, q in 0..3 (src, dst:
    C-contiguous 2-d arrays of one float dtype; no bounds checks)."""
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array)
            and src.ndim == 2 and dst.ndim == 2 and src.layout == "C"
            and dst.layout == "C" and src.dtype == dst.dtype
            and src.dtype in (types.float32, types.float64)
            and all(isinstance(a, types.Integer) for a in (row, col, i, r))):
        return None
    sig = types.void(src, types.intp, types.intp, dst, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        s, row, col, d, i, r = args
        sa = context.make_array(signature.args[0])(context, builder, s)
        da = context.make_array(signature.args[3])(context, builder, d)
        elt = context.get_data_type(signature.args[0].dtype)
        size = context.get_abi_sizeof(elt)
        vec = ir.VectorType(elt, 4)
        i64 = ir.IntType(64)
        i8p = ir.IntType(8).as_pointer()
        s_stride = builder.extract_value(sa.strides, 0)  # bytes per row
        d_stride = builder.extract_value(da.strides, 0)
        s_base = builder.gep(builder.bitcast(sa.data, i8p), [
            builder.add(builder.mul(row, s_stride), builder.mul(col, i64(size)))])
        d_base = builder.gep(builder.bitcast(da.data, i8p), [
            builder.add(builder.mul(i, d_stride), builder.mul(r, i64(size)))])
        rows = []
        for p in range(4):
            ptr = builder.gep(s_base, [builder.mul(i64(p), s_stride)])
            rows.append(builder.load(builder.bitcast(ptr, vec.as_pointer()), align=size))
        # [a0 b0 a2 b2], [a1 b1 a3 b3], [c0 d0 c2 d2], [c1 d1 c3 d3]
        t0 = _shuffle(builder, rows[0], rows[1], (0, 4, 2, 6))
        t1 = _shuffle(builder, rows[0], rows[1], (1, 5, 3, 7))
        t2 = _shuffle(builder, rows[2], rows[3], (0, 4, 2, 6))
        t3 = _shuffle(builder, rows[2], rows[3], (1, 5, 3, 7))
        cols = (_shuffle(builder, t0, t2, (0, 1, 4, 5)), _shuffle(builder, t1, t3, (0, 1, 4, 5)),
                _shuffle(builder, t0, t2, (2, 3, 6, 7)), _shuffle(builder, t1, t3, (2, 3, 6, 7)))
        for q in range(4):
            ptr = builder.gep(d_base, [builder.mul(i64(q), d_stride)])
            builder.store(cols[q], builder.bitcast(ptr, vec.as_pointer()), align=size)
        return context.get_dummy_value()

    return sig, codegen
