"""Constants shared by several layers: one home for each."""

#: The covariance types, in scikit-learn's order.
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

#: The dtypes the kernels compute in (other inputs become float64).
DTYPES = ("float64", "float32")

#: The initialisations of ``init_params``.
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data", "kmeans_standardized",
               "hierarchical")

#: Rows handed to one kernel call (or to NumPy) at a time when an in-memory
#: array is processed: bounds the per-call scratch and any (rows, K) array.
CHUNK_ROWS = 65_536
