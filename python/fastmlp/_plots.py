"""The PNG plots of ``fastmlp train --plots``: loss and accuracy per epoch, the confusion
matrix on the test split, and a grid of test images with their predictions.

matplotlib is an optional dependency (the ``plot`` extra): :func:`require_matplotlib` lets
the command line say so before training rather than after it. Figures are drawn with the
object-oriented API on the Agg backend, so no window ever opens; each file is written
atomically (see :mod:`fastmlp._atomic`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ._atomic import atomic_file

__all__ = ["require_matplotlib", "restored_epoch", "write_plots"]

_PLOT_HINT = 'pip install "fastmlp[plot]" (or pip install ".[plot]" in a source checkout)'


def require_matplotlib():
    """Raise ImportError, with how to install it, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(f"--plots needs matplotlib, which is not installed; install it "
                          f"with: {_PLOT_HINT}") from None


def write_plots(directory, rows, y_test, y_pred, images_test, target_names, title, *,
                early_stopping_metric="accuracy"):
    """Write loss.png, accuracy.png, confusion_matrix.png and samples.png; return paths.

    ``rows`` are the per-epoch records of the command line (``loss``, ``accuracy``,
    ``test_loss``, ``test_accuracy`` by ``epoch``, and ``val_loss``, ``val_accuracy`` when
    early stopping held out a validation split). With a validation split the curves show
    it too, and mark the epoch whose weights early stopping restored: the first with the
    best validation ``early_stopping_metric`` (the estimator's parameter of that name,
    whose default the command line keeps). A file that cannot be written is an OSError
    whose message names it.
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # files only, never a window
    restored = restored_epoch(rows, early_stopping_metric)
    figures = {
        "loss.png": _curve(rows, "loss", "Loss (cross-entropy)", 1, title, restored),
        "accuracy.png": _curve(rows, "accuracy", "Accuracy (%)", 100, title, restored),
        "confusion_matrix.png": _confusion(y_test, y_pred, target_names, title),
        "samples.png": _samples(y_test, y_pred, images_test, target_names, title),
    }
    written = []
    for name, fig in figures.items():
        path = Path(directory) / name
        try:
            with atomic_file(path) as f:  # a run cut short leaves no half-drawn PNG
                fig.savefig(f, format="png", dpi=100)
        except OSError as exc:  # the message the command line shows
            raise OSError(f"cannot write {path}: {exc.strerror or exc}") from None
        written.append(path)
    return written


def restored_epoch(rows, metric="accuracy"):
    """The epoch whose weights early stopping keeps, or None without a validation split.

    The estimator keeps a new best only when it is strictly better, so ties go to the
    first epoch: np.argmax and np.argmin return the first extreme too.
    """
    if not rows or "val_accuracy" not in rows[0]:
        return None
    if metric == "accuracy":
        best = int(np.argmax([r["val_accuracy"] for r in rows]))
    else:
        best = int(np.argmin([r["val_loss"] for r in rows]))
    return rows[best]["epoch"]


def _curve(rows, key, label, scale, title, restored=None):
    """``key`` per epoch: the training figure (averaged during the epoch), the test one,
    and the validation one with the restored epoch marked when early stopping was on."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(epochs, [scale * r[key] for r in rows], "o-", label="train (during epoch)")
    ax.plot(epochs, [scale * r[f"test_{key}"] for r in rows], "s-", label="test (after epoch)")
    if f"val_{key}" in rows[0]:
        ax.plot(epochs, [scale * r[f"val_{key}"] for r in rows], "^-",
                label="validation (after epoch)")
    if restored is not None:
        ax.axvline(restored, color="0.4", linestyle="--", linewidth=1,
                   label=f"restored weights (epoch {restored})")
    ax.set_xlabel("Epoch")
    ax.set_ylabel(label)
    if len(epochs) <= 20:
        ax.set_xticks(epochs)
    else:  # a tick per epoch would crowd; the automatic ticks may fall between epochs
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)  # no tick at an epoch before the first
    ax.set_title(f"{title}: {label.split(' ')[0].lower()} per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _confusion(y_test, y_pred, target_names, title):
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    fig = Figure(figsize=(8, 7), layout="constrained")
    ax = fig.add_subplot()
    labels = np.arange(len(target_names))
    ConfusionMatrixDisplay.from_predictions(
        y_test, y_pred, labels=labels, display_labels=target_names, ax=ax, cmap="Blues",
        colorbar=False, xticks_rotation=45)
    ax.set_title(f"{title}: confusion matrix on the test set "
                 f"(accuracy {100 * np.mean(y_pred == y_test):.2f}%)")
    return fig


def _samples(y_test, y_pred, images_test, target_names, title, n_rows=4, n_cols=8):
    """The first test images with their true and predicted class, wrong ones in red."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 7.2), layout="constrained")
    axes = fig.subplots(n_rows, n_cols)
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i >= len(y_test):
            continue
        ax.imshow(images_test[i], cmap="gray_r", vmin=0, vmax=255)
        wrong = y_pred[i] != y_test[i]
        ax.set_title(f"true: {target_names[y_test[i]]}\npred: {target_names[y_pred[i]]}",
                     fontsize=8, color="red" if wrong else "black")
    fig.suptitle(f"{title}: the first {min(len(y_test), n_rows * n_cols)} test images "
                 f"(red: wrong prediction)")
    return fig
