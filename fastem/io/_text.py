"""Delimited text files (CSV, TSV, whitespace), read with pandas or pure Python."""

import csv
import math
import os

import numpy as np

from ._base import _as_list, _Backend, _resolve_columns
from ._watch import _FileWatch, _read_error

# Cells that pandas.read_csv reads as missing (NaN) by default; the pure-Python
# CSV reader uses the same set so both readers agree.
_NA_STRINGS = frozenset(
    [
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
        "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
        "nan", "null",
    ]
)



class _CsvBackend(_Backend):
    """A delimited text file, streamed (pandas when importable, else pure Python)."""

    def __init__(self, path, columns):
        self.path = path
        self.name = path
        self.watch = _FileWatch(path)
        suffix = os.path.splitext(path)[1].lower()
        lines = _first_lines(path, 20)
        if not lines:
            raise ValueError(f"{path} contains no rows")
        self.delimiter = "\t" if suffix == ".tsv" else _sniff_delimiter(lines)
        first = self._split(lines[0])
        self.has_header = any(not _is_number_cell(c) for c in first)
        n_columns = len(first)
        names = [c.strip() for c in first] if self.has_header else None
        if self.has_header and len(lines) == 1:
            raise ValueError(f"{path} contains no rows (only a header line)")
        self.header_names = names
        self.n_columns = n_columns
        self.positions = _resolve_columns(columns, names, n_columns, path)
        pos = list(range(n_columns)) if self.positions is None else self.positions
        self.n_features = len(pos)
        self.column_names = None if names is None else [names[p] for p in pos]
        self.columns = _as_list(columns)
        self.source_dtype = np.dtype(np.float64)
        self.n_samples = None

    def _split(self, line):
        if self.delimiter is None:
            return line.split()
        return next(csv.reader([line], delimiter=self.delimiter))

    def _column_label(self, pos):
        if self.header_names is not None:
            return f"column {pos} ({self.header_names[pos]!r})"
        return f"column {pos}"

    def blocks(self, chunk_size, dtype):
        try:
            import pandas  # noqa: F401
        except ImportError:
            yield from self._blocks_python(chunk_size, dtype)
        else:
            yield from self._blocks_pandas(chunk_size, dtype)
        self.end_of_pass()

    def _blocks_pandas(self, chunk_size, dtype):
        import pandas as pd

        pos = list(range(self.n_columns)) if self.positions is None else self.positions
        used = sorted(set(pos))
        order = [used.index(p) for p in pos]
        kwargs = dict(
            header=0 if self.has_header else None,
            dtype=np.float64,
            chunksize=chunk_size,
        )
        if self.positions is not None:
            # Only then: with usecols, pandas tolerates rows with extra fields.
            kwargs["usecols"] = used
        if self.delimiter is None:
            kwargs["sep"] = r"\s+"
        else:
            kwargs["sep"] = self.delimiter
        reader = pd.read_csv(self.path, **kwargs)
        try:
            while True:
                try:
                    frame = next(reader)
                except StopIteration:
                    return
                except (ValueError, pd.errors.ParserError) as exc:
                    self.watch.check()  # a file cut mid-line is no bad cell
                    # Find the offending line and cell with the exact reader.
                    self._locate_error()
                    raise ValueError(f"could not read {self.path}: {exc}") from exc
                except OSError as exc:
                    raise _read_error(self.path, exc, self.watch) from exc
                values = frame.to_numpy(dtype=np.float64)
                yield values[:, order] if order != list(range(len(used))) else values
        finally:
            reader.close()

    def _blocks_python(self, chunk_size, dtype):
        pos = list(range(self.n_columns)) if self.positions is None else self.positions
        buf = np.empty((chunk_size, len(pos)), dtype=np.float64)
        filled = 0
        for row in self._parsed_rows(pos):
            buf[filled] = row
            filled += 1
            if filled == chunk_size:
                yield buf
                buf = np.empty((chunk_size, len(pos)), dtype=np.float64)
                filled = 0
        if filled:
            yield buf[:filled]

    def _parsed_rows(self, pos):
        """Yield each data row's selected cells as floats, checking every line."""
        try:
            yield from self._parsed_rows_unchecked(pos)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{self.path} is not UTF-8 text: {exc}") from exc

    def _parsed_rows_unchecked(self, pos):
        with open(self.path, newline="", encoding="utf-8-sig") as f:
            if self.delimiter is None:
                rows = ((i + 1, line.split()) for i, line in enumerate(f))
            else:
                reader = csv.reader(f, delimiter=self.delimiter)
                rows = ((reader.line_num, r) for r in reader)
            header_pending = self.has_header
            for line_no, fields in rows:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if header_pending:
                    header_pending = False
                    continue
                if len(fields) != self.n_columns:
                    raise ValueError(
                        f"{self.path}, line {line_no}: found {len(fields)} fields, "
                        f"expected {self.n_columns} (as on the first line)"
                    )
                out = []
                for p in pos:
                    cell = fields[p].strip()
                    if cell in _NA_STRINGS:
                        out.append(math.nan)
                        continue
                    try:
                        out.append(float(cell))
                    except ValueError:
                        raise ValueError(
                            f"{self.path}, line {line_no}, {self._column_label(p)}: "
                            f"cannot convert {fields[p]!r} to a number. Remove or "
                            "convert non-numeric cells, or select numeric columns "
                            "with columns=[...]"
                        ) from None
                yield out

    def _locate_error(self):
        pos = list(range(self.n_columns)) if self.positions is None else self.positions
        for _ in self._parsed_rows(pos):
            pass


def _first_lines(path, n):
    lines = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        try:
            for line in f:
                if line.strip():
                    lines.append(line.rstrip("\r\n"))
                    if len(lines) == n:
                        break
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path} is not UTF-8 text: {exc}") from exc
    return lines


def _sniff_delimiter(lines):
    """Pick tab, semicolon or comma when it splits every sampled line alike."""
    for cand in ("\t", ";", ","):
        counts = {line.count(cand) for line in lines}
        if len(counts) == 1 and counts.pop() > 0:
            return cand
    for cand in ("\t", ";", ","):
        if cand in lines[0]:
            return cand
    return None  # runs of whitespace


def _is_number_cell(cell):
    """True for a number or a missing-value marker (a data cell, not a name)."""
    cell = cell.strip()
    if cell in _NA_STRINGS:
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True

