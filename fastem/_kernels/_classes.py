"""The feature classes of the full covariance type and their tags.

A fit with full covariances runs one of three code paths, chosen by the
number of features d.  The class reaches a kernel as the dtype of an empty
"tag" array, so that it is part of the kernel's type: each class compiles
(and caches) a kernel of its own holding only its own code path, from one
kernel source.
"""

import numpy as np
from numba import types

# from this many features on, full second moments are formed from rows scaled
# by the square roots of their responsibilities (one array for both factors)
SCALED_MIN_D = 6
# code paths of the full type by number of features; each gets kernels of its
# own (compiled only when data of that kind arrive), see _d_class
DCLASS_SMALL = 0     # d <= 2: one sweep per component, all in registers
DCLASS_WEIGHTED = 1  # 2 < d < SCALED_MIN_D: tiles on responsibility-weighted rows
DCLASS_SCALED = 2    # d >= SCALED_MIN_D: tiles on square-root-scaled rows
# The class reaches the kernels as the dtype of an empty "tag" array, so that
# it is part of the kernel's type: each class compiles (and caches) a kernel
# of its own holding only its own code path, from one kernel source.
_TAG_DTYPES = (np.int8, np.int16, np.int32)
_TAGS = tuple(np.empty(0, dtype=t) for t in _TAG_DTYPES)

_f8 = types.float64
_i8 = types.int64


def d_class(d):
    """The code path of the full type for d features (DCLASS_*)."""
    if d <= 2:
        return DCLASS_SMALL
    return DCLASS_WEIGHTED if d < SCALED_MIN_D else DCLASS_SCALED


def class_tag(d):
    """The tag array (empty; its dtype names the class) for d features."""
    return _TAGS[d_class(d)]


def class_name(tag):
    """'1-2 features', '3-5 features' or '6+ features' for a tag array."""
    return ("d<=2", f"2<d<{SCALED_MIN_D}", f"d>={SCALED_MIN_D}")[
        _TAG_DTYPES.index(tag.dtype.type)]


def _tag_class(tag):
    """DCLASS_* of a tag's Numba array type (at compile time)."""
    return [types.int8, types.int16, types.int32].index(tag.dtype)
