"""fastmlp's one progress bar: a line on stderr redrawn in place.

Two things report progress with it: training (the batches of an epoch, drawn by
:func:`draw_bar`) and downloads (the bytes of a file, drawn by :func:`draw_transfer`).
Both draw the same bar with the same line discipline, and :func:`clear_line` erases
whichever is shown so that the next message starts on a clean line.

Every line is fitted to the terminal's width at the time it is drawn: a line longer than
the terminal wraps, and ``\r`` then returns only to the start of the wrapped part, leaving
one stale line per redraw. The bar shrinks first; on a terminal too narrow even for the
figures, the line is cut. fastmlp draws the bar itself rather than with tqdm: the same
line discipline serves training, downloads and the command line's messages in between
(see :func:`clear_line`), with no dependency.

In a Jupyter notebook stderr is no terminal, and ``\r`` redraws pile up in the cell's
output: there training shows ``tqdm.auto``'s widget instead, one per epoch, when tqdm is
installed (the ``notebook`` extra), and nothing otherwise (:func:`epoch_progress`).
"""

import os
import shutil
import sys

_WIDTH = 30  # characters between the brackets, when the terminal has room
_MIN_WIDTH = 5  # a narrower bar says too little to be worth its columns
_shown = False  # whether a bar is on screen (and the cursor is at its end)


def stderr_is_terminal():
    """Whether stderr is an interactive terminal (logs and CI get no progress bar)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def in_notebook():
    """Whether this runs in a Jupyter kernel (IPython's ZMQ shell), whose stderr is a cell's
    output rather than a terminal."""
    ipython = sys.modules.get("IPython")
    if ipython is None or "ipykernel" not in sys.modules:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # an IPython too old or too broken to ask: not a notebook
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def terminal_columns():
    """Width of the terminal the bar is drawn on: ``$COLUMNS`` when set, else stderr's
    terminal, else what :func:`shutil.get_terminal_size` finds (stdout's, or 80)."""
    if os.environ.get("COLUMNS", "").isdigit() and int(os.environ["COLUMNS"]) > 0:
        return int(os.environ["COLUMNS"])
    try:
        columns = os.get_terminal_size(sys.stderr.fileno()).columns
    except (AttributeError, OSError, ValueError):  # not a file, or not a terminal
        columns = 0
    return columns or shutil.get_terminal_size().columns


def _bar(done, total, width):
    """``[####......]``: the part done of ``total``, full at (or past) the end."""
    filled = min(width, width * done // max(total, 1))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _fit(head, done, total, tail):
    """``head [bar] tail`` in fewer columns than the terminal has.

    One column stays free: writing into the last one makes some terminals wrap.
    """
    room = max(0, terminal_columns() - 1)
    width = min(_WIDTH, room - len(head) - len(tail) - 4)  # 2 spaces, 2 brackets
    if width >= _MIN_WIDTH:
        return f"{head} {_bar(done, total, width)} {tail}"
    return f"{head} {tail}"[:room]


def _show(text):
    """Replace the current line of stderr by ``text``."""
    global _shown
    sys.stderr.write(f"\r{text}\033[K")
    sys.stderr.flush()
    _shown = True


def clear_line():
    """Erase the bar, if one is shown, so the next line starts clean."""
    global _shown
    if _shown:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
        _shown = False


def end_line():
    """Leave the bar, if one is shown, as it is and move to the next line."""
    global _shown
    if _shown:
        sys.stderr.write("\n")
        sys.stderr.flush()
        _shown = False


def draw_bar(epoch, n_epochs, done, total, loss, accuracy, elapsed):
    """The training bar: epoch, samples done, running loss and accuracy, seconds."""
    _show(_fit(f"Epoch {epoch}/{n_epochs}", done, total, f"{done}/{total}  loss {loss:.4f}  "
               f"acc {100 * accuracy:.2f}%  {elapsed:.1f}s"))


def draw_transfer(name, done, total):
    """The download bar of file ``name``: megabytes received, of ``total`` bytes when the
    size is known (None otherwise: then only the count)."""
    if total:
        _show(_fit(f"{name}:", done, total, f"{done / 1e6:6.1f}/{total / 1e6:.1f} MB"))
    else:
        _show(f"{name}: {done / 1e6:6.1f} MB"[:max(0, terminal_columns() - 1)])


class _TerminalEpoch:
    """The training bar on a terminal: :func:`draw_bar`'s line, redrawn in place."""

    def __init__(self, epoch, n_epochs, total):
        self.epoch, self.n_epochs, self.total = epoch, n_epochs, total

    def update(self, done, loss, accuracy, elapsed):
        draw_bar(self.epoch, self.n_epochs, done, self.total, loss, accuracy, elapsed)

    def close(self):
        pass  # the epoch's line replaces the bar (clear_line)


class _NotebookEpoch:
    """The training bar in a notebook: a ``tqdm.auto`` widget for the epoch's samples."""

    def __init__(self, tqdm, epoch, n_epochs, total):
        self.bar = tqdm(total=total, desc=f"Epoch {epoch}/{n_epochs}", unit="img",
                        leave=False)
        self.done = 0

    def update(self, done, loss, accuracy, elapsed):
        self.bar.set_postfix_str(f"loss {loss:.4f}  acc {100 * accuracy:.2f}%", refresh=False)
        self.bar.update(done - self.done)
        self.done = done

    def close(self):
        self.bar.close()


def epoch_progress(epoch, n_epochs, total):
    """What shows an epoch's progress: the line on a terminal, tqdm.auto's bar in a
    notebook (when tqdm is installed), else None. Call ``update(done, loss, accuracy,
    elapsed)`` after each chunk and ``close()`` at the end."""
    if stderr_is_terminal():
        return _TerminalEpoch(epoch, n_epochs, total)
    if in_notebook():
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        return _NotebookEpoch(tqdm, epoch, n_epochs, total)
    return None
