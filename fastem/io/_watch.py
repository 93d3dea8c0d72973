"""File identity: notice a file rewritten, truncated or replaced while it is read."""

import os

# ---------------------------------------------------------------------------
# Files that change while they are read. A file source records the identity
# of its file (size, modification time, inode) when it is opened and checks
# it again at the start and at the end of every pass: a fit that reads the
# data once per EM iteration must not silently mix the rows of two files.
# ---------------------------------------------------------------------------


def _identity(st):
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def _stat_changes(old, new):
    """What differs between two ``os.stat`` results, in words (a list)."""
    changes = []
    if (old.st_ino, old.st_dev) != (new.st_ino, new.st_dev):
        changes.append("replaced by another file")
    if old.st_size != new.st_size:
        changes.append(f"size {old.st_size} -> {new.st_size} bytes")
    if old.st_mtime_ns != new.st_mtime_ns:
        changes.append("modified")
    return changes


def _changed_error(path, changes):
    return ValueError(
        f"{path} changed since the fit started ({'; '.join(changes)}); a file "
        "must not be rewritten, truncated or replaced while it is being read, "
        "because the result would mix rows of the old and the new data. Write "
        "new data to a new file, or fit again once the file is complete."
    )


class _FileWatch:
    """The identity of a file when a source opened it, checked again later."""

    def __init__(self, path, st=None):
        self.path = path
        self.stat = os.stat(path) if st is None else st

    def changes(self, st=None):
        """Differences to the recorded identity (``st``: a fresh stat, or None)."""
        if st is None:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return ["the file was deleted or moved away"]
        return _stat_changes(self.stat, st)

    def check(self, st=None):
        changes = self.changes(st)
        if changes:
            raise _changed_error(self.path, changes)


def _read_error(path, exc, watch=None):
    """A read error that names ``path``: the file changed, or ``exc`` reworded.

    Errors that already name the file are returned unchanged.
    """
    if watch is not None:
        changes = watch.changes()
        if changes:
            return _changed_error(path, changes)
    if path in str(exc):
        return exc
    if isinstance(exc, OSError):
        return OSError(f"could not read {path}: {exc}")
    return ValueError(f"could not read {path}: {exc}")

