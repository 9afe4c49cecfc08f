"""A one-line progress bar over the batches of an epoch, on stderr, for terminals only."""

import sys

_shown = False


def stderr_is_terminal():
    """Whether stderr is an interactive terminal (logs and CI get no progress bar)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def clear_line():
    """Erase the bar, if one is shown, so the next line starts clean."""
    global _shown
    if _shown:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
        _shown = False


def draw_bar(epoch, n_epochs, done, total, loss, accuracy, elapsed):
    """Redraw the bar in place: epoch, samples done, running loss and accuracy, seconds."""
    global _shown
    width = 30
    filled = int(width * done / max(total, 1))
    bar = "#" * filled + "." * (width - filled)
    sys.stderr.write(f"\rEpoch {epoch}/{n_epochs} [{bar}] {done}/{total}  "
                     f"loss {loss:.4f}  acc {100 * accuracy:.2f}%  {elapsed:.1f}s\033[K")
    sys.stderr.flush()
    _shown = True
