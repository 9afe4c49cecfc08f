"""Files that appear whole or not at all.

A :class:`StagedFile` is written under a hidden temporary name in the directory of its
final path, flushed to disk, and only then renamed over that path: on the same file
system ``os.replace`` is atomic, so readers see the old file or the complete new one,
never half of it. :func:`atomic_file` is the one-file case; the downloader stages several
files and commits them together, so that a data set lands all at once or not at all.
"""

from __future__ import annotations

import contextlib
import os
import secrets

__all__ = ["StagedFile", "atomic_file"]

# A new binary file, failing if the name exists (temporary names are random).
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


class StagedFile:
    """The future content of ``path``, written to a temporary file beside it.

    ``write()`` yields the open temporary file and syncs it to disk when the block ends;
    ``commit()`` renames it over ``path``; ``discard()`` deletes it (safe to call whether
    or not it was ever created).
    """

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))
        directory, name = os.path.split(self.path)
        self.tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.part")

    @contextlib.contextmanager
    def write(self):
        fd = os.open(self.tmp, _NEW_FILE_FLAGS, 0o666)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())

    def commit(self):
        os.replace(self.tmp, self.path)

    def discard(self):
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


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
