"""Constants shared by several layers: one home for each."""

#: The covariance types, in scikit-learn's order.
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

#: The dtypes the kernels compute in (other inputs become float64).
DTYPES = ("float64", "float32")

#: The initialisations of ``init_params``.
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data", "kmeans_standardized",
               "hierarchical")

#: Rows handed to one kernel call (or to NumPy) at a time when per-row results
#: of an in-memory array are formed (log probabilities, predictions, the
#: k-means start): bounds any (rows, K) array.  E-step passes use larger
#: calls, see PASS_PARTIALS_BYTES.
CHUNK_ROWS = 65_536

#: Bytes of per-task partial statistics one E-step pass call may hold: an
#: in-memory array goes to the pass kernels in calls of as many whole tasks as
#: fit in it (never fewer rows than CHUNK_ROWS).  Each call wakes the kernel
#: threads once, and with the passive OpenMP wait policy a wake-up costs tens
#: of microseconds; the result does not depend on the call size.
PASS_PARTIALS_BYTES = 16 * 2**20
