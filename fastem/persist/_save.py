"""Atomic writes: a temporary file in the target's folder, flushed, then renamed;
modes and symbolic links kept; temporary files of crashed saves removed.
"""

import errno
import os
import re
import secrets
import stat
import time

#: Temporary files of a save are named ``.<target name>.<pid>.<16 hex
#: digits>.fastem-tmp`` in the target's folder.
TMP_SUFFIX = ".fastem-tmp"
#: A temporary file of an earlier save of the same target is removed when it
#: was not modified for this many seconds...
STALE_AFTER_S = 3600.0
#: ...or when the process named in it is not running on this machine and it
#: was not modified for this many seconds (a writer on another machine
#: sharing the folder keeps modifying its file while it writes).
STALE_DEAD_PID_AFTER_S = 60.0


def _tmp_pattern(name):
    return re.compile(re.escape(f".{name}.") + r"(\d+)\.[0-9a-f]{16}"
                      + re.escape(TMP_SUFFIX))


def _pid_running(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, OSError):
        return True  # exists (another user's) or cannot tell: keep the file
    return True


def _remove_stale_tmp_files(folder, name, now=None):
    """Remove temporary files left by earlier, crashed saves of ``name``.

    Only files matching this target's own temporary-name pattern are
    considered; see :data:`STALE_AFTER_S` and :data:`STALE_DEAD_PID_AFTER_S`.
    Returns the names removed. Never raises.
    """
    pattern = _tmp_pattern(name)
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                continue
            age = now - st.st_mtime
            if age > STALE_AFTER_S or (age > STALE_DEAD_PID_AFTER_S
                                       and not _pid_running(int(m.group(1)))):
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            continue
    return removed


def _write_atomically(path, write):
    """Write a file through ``write(fileobj)`` to a temporary file, then
    rename it over ``path``.

    - A symbolic link is followed: its target is replaced, the link kept.
    - A new file gets the mode a plain ``open`` would give it (0666 less the
      umask); a replaced file keeps its mode.
    - The data is flushed to disk before the rename; on any exception
      (KeyboardInterrupt included) the temporary file is removed and the
      target is left as it was.
    - Errors name ``path``, not the temporary file.
    """
    target = os.path.realpath(path)
    folder, name = os.path.split(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "No such folder to save the model in", path)
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
    _remove_stale_tmp_files(folder, name)
    try:
        old_mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        old_mode = None
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    # A new file: the kernel applies the umask to 0666, as for open(path, "w").
    # A replaced file: private while written, then the old file's mode.
    create_mode = 0o666 if old_mode is None else 0o600
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(8)}"
                                   f"{TMP_SUFFIX}")
        try:
            fd = os.open(tmp, flags, create_mode)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, path) from None
    else:  # pragma: no cover - 100 collisions of 64 random bits
        raise FileExistsError(errno.EEXIST, "No free temporary name", path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if old_mode is not None:
                os.fchmod(f.fileno(), old_mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, path) from None
        raise
    _fsync_folder(folder)


def _fsync_folder(folder):
    """Make the rename durable (best effort: not every system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
