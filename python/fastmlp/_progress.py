"""fastmlp's one progress bar: a line on stderr redrawn in place.

Two things report progress with it: training (the batches of an epoch, drawn by
:func:`draw_bar`) and downloads (the bytes of a file, drawn by :func:`draw_transfer`).
Both draw the same bar with the same line discipline, and :func:`clear_line` erases
whichever is shown so that the next message starts on a clean line.
"""

import sys

_WIDTH = 30  # characters between the brackets
_shown = False  # whether a bar is on screen (and the cursor is at its end)


def stderr_is_terminal():
    """Whether stderr is an interactive terminal (logs and CI get no progress bar)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _bar(done, total):
    """``[####......]``: the part done of ``total``, full at (or past) the end."""
    filled = min(_WIDTH, _WIDTH * done // max(total, 1))
    return "[" + "#" * filled + "." * (_WIDTH - filled) + "]"


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
    _show(f"Epoch {epoch}/{n_epochs} {_bar(done, total)} {done}/{total}  "
          f"loss {loss:.4f}  acc {100 * accuracy:.2f}%  {elapsed:.1f}s")


def draw_transfer(name, done, total):
    """The download bar of file ``name``: megabytes received, of ``total`` bytes when the
    size is known (None otherwise: then only the count)."""
    if total:
        _show(f"{name}: {_bar(done, total)} {done / 1e6:6.1f}/{total / 1e6:.1f} MB")
    else:
        _show(f"{name}: {done / 1e6:6.1f} MB")
