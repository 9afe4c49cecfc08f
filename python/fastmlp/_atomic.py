"""Files that appear whole or not at all.

A :class:`StagedFile` is written under a hidden temporary name in the directory of its
final path, flushed to disk, and only then renamed over that path: on the same file
system ``os.replace`` is atomic, so readers see the old file or the complete new one,
never half of it. :func:`atomic_file` is the one-file case; the downloader stages several
files and commits them together, so that a data set lands all at once or not at all.

Only regular files are ever replaced: a FIFO, a device (``/dev/null`` or a symbolic link
to it), a socket or a directory at the final path is refused up front by
:func:`check_target`. A replaced file keeps its permission bits; a new one gets the mode
``open()`` would give it (0666 less the umask).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat

__all__ = ["StagedFile", "atomic_file", "check_target"]

# A new binary file, failing if the name exists (temporary names are random).
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)

# File type test -> what to call such a file in a message.
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_target(path):
    """The ``os.stat`` of the regular file at ``path`` (links followed), or None if there
    is none; ``OSError`` naming the path when something else is there.

    Renaming over a FIFO or a device would replace it with a regular file (as root, even
    ``/dev/null``), so such targets are refused rather than written.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(st.st_mode):
        return st
    kind = next((k for test, k in _KINDS if test(st.st_mode)), "not a regular file")
    raise OSError(
        f"{path} is {kind}, not a regular file; fastmlp writes only regular files: "
        f"give the path of a file (new or existing)"
    )


class StagedFile:
    """The future content of ``path``, written to a temporary file beside it.

    ``write()`` checks the target (see :func:`check_target`), yields the open temporary
    file and syncs it to disk when the block ends; ``commit()`` renames it over ``path``;
    ``discard()`` deletes it (safe to call whether or not it was ever created).
    """

    def __init__(self, path):
        given = os.fspath(path)
        if isinstance(given, str) and given.endswith(("/", os.sep)):
            # abspath would drop the slash and write a file where a directory was meant.
            raise IsADirectoryError(errno.EISDIR, "a directory (the path ends in a slash), "
                                    "not a file", given)
        self.path = os.path.abspath(given)
        directory, name = os.path.split(self.path)
        self.tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.part")

    @contextlib.contextmanager
    def write(self):
        existing = check_target(self.path)
        try:
            fd = os.open(self.tmp, _NEW_FILE_FLAGS, 0o666)  # the umask applies, as for open()
        except FileNotFoundError:  # named by the target, not the temporary file
            raise FileNotFoundError(errno.ENOENT, "its directory does not exist",
                                    self.path) from None
        with os.fdopen(fd, "wb") as f:
            if existing is not None and hasattr(os, "fchmod"):
                # A private (say 0600) file must not become world-readable when replaced.
                os.fchmod(fd, stat.S_IMODE(existing.st_mode))
            yield f
            f.flush()
            os.fsync(f.fileno())

    def commit(self):
        os.replace(self.tmp, self.path)
        _sync_directory(os.path.dirname(self.path))

    def discard(self):
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


def _sync_directory(directory):
    """Make a rename in ``directory`` durable: without it, a power cut right after
    ``commit()`` could bring back the old file, or none. Not possible everywhere."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path):
    """A binary file object whose content replaces ``path`` only if the block succeeds.

    On any failure (an exception or Ctrl-C inside the block, or while syncing), the
    temporary file is deleted and ``path`` is left as it was.
    """
    staged = StagedFile(path)
    try:
        with staged.write() as f:
            yield f
        staged.commit()
    except BaseException:
        staged.discard()
        raise
