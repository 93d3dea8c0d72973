"""The ``fastem`` command-line tool.

Examples
--------
fastem fit                       # Old Faithful, 2 components
fastem fit data.npy -k 8 --covariance-type diag --out model.npz
fastem fit data.csv -k 3 --columns x,y --plot fit.png
fastem predict model.npz data.npy --out labels.npy
fastem info model.npz
fastem sample model.npz -n 1000 --out samples.npy
fastem select -k 1:6 --types full,diag
fastem bench --help

Every subcommand prints its own help with examples (``fastem fit --help``).
Every failure is reported as one line on stderr with exit status 2: bad
arguments as ``fastem COMMAND: error: ...`` (the usage is shown by
``--help`` only), everything else (missing or unreadable files, invalid or
tampered models, requests too large for memory) as ``fastem: error: ...``.
"""

from ._args import COVARIANCE_TYPES, CLIError
from ._args import _columns as _columns
from ._args import _covariance_types as _covariance_types
from ._args import _dtypes as _dtypes
from ._args import _k_values as _k_values
from ._args import _Parser as _Parser
from ._args import _positive_int as _positive_int
from ._commands import (MAX_SAMPLE_VALUES, cmd_compile, cmd_fit, cmd_info, cmd_predict,
                        cmd_sample)
from ._data import load_data
from ._main import main
from ._output import PLOT_MAX_POINTS, format_components
from ._parser import (EPILOG_BENCH, EPILOG_COMPILE, EPILOG_FIT, EPILOG_INFO, EPILOG_PREDICT,
                      EPILOG_SAMPLE, EPILOG_SELECT, build_parser)
from ._select import cmd_select

__all__ = ["main", "build_parser", "CLIError", "load_data", "format_components",
           "cmd_fit", "cmd_predict", "cmd_info", "cmd_sample", "cmd_select", "cmd_compile",
           "COVARIANCE_TYPES", "PLOT_MAX_POINTS", "MAX_SAMPLE_VALUES",
           "EPILOG_FIT", "EPILOG_PREDICT", "EPILOG_INFO", "EPILOG_SAMPLE", "EPILOG_SELECT",
           "EPILOG_COMPILE", "EPILOG_BENCH"]
