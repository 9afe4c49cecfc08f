"""The ``fastmlp`` command line (also ``python -m fastmlp``).

Subcommands:

- ``train``: load Fashion-MNIST (or MNIST, or four IDX files in a directory), scale the
  pixels, train an :class:`~fastmlp.MLPImageClassifier` and report, after every epoch, the
  training loss and accuracy (averaged over the epoch's batches as they were trained) and
  the test loss and accuracy. With no options it runs the reference configuration:
  784-256(ReLU)-10, pixels scaled to [-1, 1], PyTorch-style initialization, plain SGD with
  learning rate 0.01, batches of 64, shuffled, 5 epochs. Optionally saves the model, a JSON
  record of the run and PNG plots.
- ``evaluate``: test accuracy, per-class report and confusion matrix of a saved model, on
  the test split (only its two files are read; a directory holding only them will do).
  A model whose classes are not the data set's labels is refused.
- ``predict``: the most probable classes of the user's images (PNG/JPEG via Pillow,
  ``.npy``, IDX) under a saved model.
- ``summary``: the per-layer table of an architecture.
- ``bench``: runs ``bench/bench_training.py`` of the source checkout fastmlp is installed
  from (an editable install); never a file found from the current directory.

Errors a user can fix (missing data, bad values, unwritable paths, divergence, a model too
large for memory) end with a one-line message on stderr and exit status 1; argparse
reports bad usage with status 2, and so does ``train`` for an output file that is another
file of the run (``--json`` naming the ``--save`` or ``--resume`` model) and for an option
that the other options make meaningless (``--momentum`` with ``--solver adam``,
``--warmup-epochs`` without ``--lr-schedule cosine``, ``--dropout`` with ``--hidden ""``,
``--validation-data`` without ``--early-stopping``, ``--preset`` with ``--resume``), before
it loads any data. Ctrl-C ends with status 130, also when training was cut short
and the epochs trained so far were reported and saved. When stdout is a closed pipe
(``fastmlp summary | head -1``), the command stops quietly with status 141, what a
program killed by SIGPIPE reports in the shell. None of these prints a traceback.

Every file the command writes (``--save``, ``--json``, ``--plots``) appears whole or not
at all: it is written beside its final name and renamed over it once complete, so a
crash, Ctrl-C or a full disk leaves the previous file as it was.

Model files are written by :func:`fastmlp.save`: NumPy arrays and a JSON header, read
without pickle, so loading one runs no code from it. Model files of older fastmlp
versions were joblib pickles; ``evaluate`` reads them only with ``--allow-pickle``
(loading a pickle runs code it contains: only for files you trust).

The heavy imports (scikit-learn, the estimator) happen inside :func:`main`, so that
Ctrl-C during start-up is handled like Ctrl-C at any later time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from . import _core, _machine, _plots, datasets
from ._atomic import atomic_file, check_target
from ._progress import clear_line as _clear_line
from ._progress import draw_bar as _draw_bar
from ._progress import stderr_is_terminal
from ._training import (
    FLOAT32_BELOW_ONE,
    core_precision,
    float32_normal,
    float32_range_text,
    float32_rate,
    penalty_overshoot,
)
from .exceptions import TrainingDivergedError, TrainingInterruptedWarning

__all__ = ["main", "build_parser"]

_NORMALIZATIONS = {
    "none": "raw pixels 0..255",
    "unit": "pixels scaled to [0, 1]",
    "symmetric": "pixels scaled to [-1, 1]",
    "standard": "pixels standardized with the training mean and standard deviation",
}
# Command-line name -> estimator name: the core's names, and "sigmoid" as the lecture says.
_ACTIVATIONS = {**{name: name for name in _core.ACTIVATION_LABELS}, "sigmoid": "logistic"}


class CommandError(Exception):
    """An error the user can act on: printed as a message, never as a traceback."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------------------
# Option parsing
# --------------------------------------------------------------------------------------

def _int_from(low, what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


def _int_in(low, high, what):
    at_least = _int_from(low, what)

    def parse(text):
        value = at_least(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


_positive_int = _int_from(1, "a positive integer")
_nonnegative_int = _int_from(0, "an integer >= 0")
# The seeds the estimator's random_state takes (NumPy's RandomState).
_seed = _int_in(0, 2**32 - 1, "a seed in [0, 4294967295]")
# The widest layer the core takes: its sizes are 32-bit integers.
_MAX_WIDTH = 2**31 - 1


def _file_path(text):
    """A file path; the empty string names no file (it would be the current directory)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a file path, got ''")
    return text


def _float_in(low, high=math.inf, low_open=False, what="a number"):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


_nonnegative_float = _float_in(0.0, what="a number >= 0")
_unit_interval = _float_in(0.0, 1.0, what="a number in [0, 1]")


def _float32_number(low_open, what):
    """A number >= 0 (> 0 if ``low_open``) that the training core, which computes in
    float32, can hold: the estimator's rule (:func:`~fastmlp._training.float32_normal`),
    so that 1e-320 (0 in float32) or 1e39 (infinite) is refused before any data is read."""
    at_least = _float_in(0.0, low_open=low_open, what=what)

    def parse(text):
        value = at_least(text)
        ok, single = float32_normal(value, zero_ok=not low_open)
        if not ok:
            raise argparse.ArgumentTypeError(
                f"expected {what} in float32's range, the precision fastmlp trains in "
                f"({float32_range_text(zero_ok=not low_open)}), got {text!r} ({single!r} "
                f"in float32)")
        return value

    parse.__name__ = what
    return parse


_learning_rate = _float32_number(True, "a positive number")
_penalty = _float32_number(False, "a number >= 0")


def _rate(text):
    """A rate in [0, 1): dropout, label smoothing; below 1 also in float32, which the
    training core computes in (0.9999999999 is 1.0 there)."""
    value = _unit_interval(text)
    if value == 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    ok, single = float32_rate(value)
    if not ok:
        raise argparse.ArgumentTypeError(
            f"expected a number in [0, 1) that stays below 1 in float32, the precision "
            f"fastmlp trains in (at most {FLOAT32_BELOW_ONE:.8g}), got {text!r} ({single!r} "
            f"in float32)")
    return value


# The command line's name of each estimator parameter a preset sets.
_PRESET_OPTIONS = {
    "hidden_layer_sizes": "hidden", "solver": "solver", "learning_rate_init": "lr",
    "learning_rate": "lr_schedule", "warmup_epochs": "warmup_epochs",
    "batch_size": "batch_size", "max_iter": "epochs", "alpha": "alpha",
    "weight_decay": "weight_decay", "dropout": "dropout", "label_smoothing": "label_smoothing",
    "random_shift": "random_shift", "random_flip": "random_flip", "weight_init": "init",
    "momentum": "momentum",
}


def _hidden_sizes(text):
    """'256' -> (256,); '256,128' -> (256, 128); '' -> () (softmax regression)."""
    parts = [p.strip() for p in text.replace(" ", ",").split(",")]
    parts = [p for p in parts if p]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = None
    if sizes is None or any(s < 1 or s > _MAX_WIDTH for s in sizes):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive layer widths (at most {_MAX_WIDTH}) such as "
            f"256 or 256,256 (or \"\" for none), got {text!r}")
    return sizes


def _add_data_options(parser, default_dataset, test_only=False):
    """--dataset, --data-dir, --download; ``test_only``: the command reads only the test
    files (evaluate)."""
    names = [name for part, name in datasets._FILES.items()
             if not test_only or part.startswith("test_")]
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset", choices=sorted(datasets._DATASETS), default=default_dataset,
        help="data set to use" + (" (default: %(default)s)" if default_dataset else
                                  " (default: the one the model was trained on)"))
    group.add_argument(
        "--data-dir", metavar="DIR",
        help=f"directory holding the {'two test' if test_only else 'four'} IDX files "
             f"({', '.join(names)}, gzipped or not); default: the loaders' lookup ($FASTMLP_DATA, "
             f"/usr/share/datasets, the user cache)")
    group.add_argument(
        "--download", action="store_true",
        help="download the data set (checksum-verified) when it is found nowhere; with "
             "--data-dir, when DIR lacks it (into DIR/<dataset>)")


class _CommandParser(argparse.ArgumentParser):
    """The top-level parser. Arguments the chosen command does not take are reported with
    that command's usage, which lists its options, rather than the top-level one.
    ``predict``'s files may follow its options too (``predict MODEL a.png --top 2
    b.png``): argparse ends a list of positional arguments at the first option."""

    commands: dict[str, argparse.ArgumentParser] = {}  # name -> its subparser (build_parser)

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if parsed.command == "predict" and not any(e.startswith("-") for e in extras):
            parsed.files, extras = parsed.files + extras, []
        if extras:
            self.commands[parsed.command].error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def build_parser(train_defaults=None):
    """The argparse parser of the ``fastmlp`` command; ``train_defaults`` replaces
    defaults of ``train`` (a preset's values)."""
    from . import __version__

    parser = _CommandParser(
        prog="fastmlp",
        description="Train and evaluate multilayer perceptrons on images "
                    "(Fashion-MNIST, MNIST) on the CPU.")
    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_train_command(sub, train_defaults or {})
    _add_evaluate_command(sub)
    _add_predict_command(sub)
    _add_summary_command(sub)
    sub.add_parser(
        "bench", add_help=False, help="run the training benchmark (source checkout only)",
        description="Run bench/bench_training.py with the remaining arguments.")
    parser.commands = sub.choices
    return parser


def _add_train_command(sub, defaults):
    train = sub.add_parser(
        "train",
        help="train a model and print per-epoch training and test results",
        description="Train an MLP and print, after each epoch, the training loss and "
                    "accuracy (averaged over the epoch's batches) and the test loss and "
                    "accuracy. Without options: 784-256(ReLU)-10, pixels scaled to [-1, 1], "
                    "PyTorch-style initialization, SGD with lr 0.01, batch 64, 5 epochs.")
    _add_data_options(train, "fashion-mnist")
    model = train.add_argument_group("model")
    model.add_argument("--hidden", type=_hidden_sizes, default=(256,), metavar="SIZES",
                       help='hidden layer widths, e.g. 256 or 256,256; "" for softmax '
                            "regression (default: 256)")
    model.add_argument("--activation", choices=sorted(_ACTIVATIONS), default="relu",
                       help="hidden activation; sigmoid is the same as logistic "
                            "(default: %(default)s)")
    model.add_argument("--init", choices=("glorot", "pytorch"), default="pytorch",
                       help="weight initialization: pytorch = U(+-1/sqrt(fan_in)), "
                            "glorot = U(+-sqrt(6/(fan_in+fan_out))) (default: %(default)s)")
    opt = train.add_argument_group("training")
    opt.add_argument("--normalize", choices=tuple(_NORMALIZATIONS), default="symmetric",
                     help="pixel scaling: none (0..255), unit ([0, 1]), symmetric "
                          "([-1, 1]) or standard (training mean 0, std 1) "
                          "(default: %(default)s)")
    opt.add_argument("--solver", choices=("sgd", "adam"), default="sgd",
                     help="optimizer (default: %(default)s)")
    opt.add_argument("--lr", type=_learning_rate, default=0.01,
                     help="learning rate (default: %(default)s)")
    opt.add_argument("--momentum", type=_unit_interval, default=0.0,
                     help="SGD momentum (default: %(default)s)")
    opt.add_argument("--nesterov", action="store_true",
                     help="use Nesterov's momentum (with --momentum > 0)")
    opt.add_argument("--alpha", type=_penalty, default=0.0,
                     help="L2 penalty on the weights (default: %(default)s)")
    opt.add_argument("--batch-size", type=_positive_int, default=64,
                     help="samples per batch (default: %(default)s)")
    opt.add_argument("--epochs", type=_positive_int, default=5,
                     help="training epochs (default: %(default)s)")
    opt.add_argument("--early-stopping", action="store_true",
                     help="hold out 10%% of the training data, stop when its accuracy has "
                          "not improved for --patience epochs and keep the best weights")
    opt.add_argument("--validation-data", nargs=2, metavar=("IMAGES", "LABELS"),
                     help="with --early-stopping, watch these images and labels (IDX files, "
                          ".gz or raw, or .npy) instead of 10%% of the training data")
    opt.add_argument("--patience", type=_positive_int, default=10,
                     help="epochs without improvement before --early-stopping stops "
                          "(default: %(default)s)")
    opt.add_argument("--resume", metavar="MODEL", type=_file_path,
                     help="continue training a model saved by --save (warm start, with its "
                          "optimizer state if saved with --save-optimizer-state); its saved "
                          "options (a model saved from Python: its parameters) become the "
                          "defaults, --epochs says how many more epochs")
    opt.add_argument("--seed", type=_seed, default=0,
                     help="random seed of initialization and shuffling (default: %(default)s)")
    _add_regularization_options(train)
    opt.add_argument("--threads", type=_positive_int, default=None,
                     help="threads of the training core (default: all cores, or "
                          "OMP_NUM_THREADS)")
    opt.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                     help="arithmetic of the matrix products: bfloat16 operands with float32 "
                          "sums, about twice as fast with AMX and faster with AVX512-BF16 on "
                          "AMD Zen 4/5 (README: time both on other CPUs); float32 where the "
                          "CPU has neither (default: %(default)s)")
    out = train.add_argument_group("output")
    out.add_argument("--save", metavar="FILE", type=_file_path,
                     help="save the model (the classifier; it scales its own input) to "
                          "FILE, e.g. model.fastmlp, in fastmlp's model file format (no "
                          "pickle: loading it runs no code); see fastmlp.load")
    out.add_argument("--save-optimizer-state", action="store_true",
                     help="also save the optimizer's state (Adam's moments, the SGD "
                          "velocity), so that --resume continues exactly as an uninterrupted "
                          "run; makes the file up to 3x larger")
    out.add_argument("--plots", metavar="DIR",
                     help="write PNG plots (loss and accuracy curves, confusion matrix, "
                          "sample predictions) to DIR; needs matplotlib")
    out.add_argument("--json", metavar="FILE", type=_file_path,
                     help="write the configuration, per-epoch history and final metrics")
    out.add_argument("-q", "--quiet", action="store_true",
                     help="print only the final test accuracy (and errors)")
    train.set_defaults(handler=_cmd_train, **defaults)


def _add_regularization_options(train):
    from ._presets import PRESETS

    reg = train.add_argument_group("schedule, regularization and augmentation")
    reg.add_argument("--preset", choices=sorted(PRESETS), default=None,
                     help="a recommended recipe: " + "; ".join(
                         f"{k}: {p.description}" for k, p in PRESETS.items())
                     + ". Options given with it override its values")
    reg.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                     help="constant, or linear warmup then cosine decay to 0, per step "
                          "(default: %(default)s)")
    reg.add_argument("--warmup-epochs", type=_nonnegative_float, default=0.0,
                     help="epochs of warmup of the cosine schedule (default: %(default)s)")
    reg.add_argument("--dropout", type=_rate, default=0.0,
                     help="dropout rate of the hidden layers (default: %(default)s)")
    reg.add_argument("--weight-decay", type=_nonnegative_float, default=0.0,
                     help="decoupled weight decay (AdamW with adam) (default: %(default)s)")
    reg.add_argument("--label-smoothing", type=_rate, default=0.0,
                     help="label smoothing of the training targets (default: %(default)s)")
    reg.add_argument("--random-shift", type=_nonnegative_int, default=0, metavar="PIXELS",
                     help="shift training images by up to this many pixels "
                          "(default: %(default)s)")
    reg.add_argument("--random-flip", action=argparse.BooleanOptionalAction, default=False,
                     help="mirror training images horizontally at random")


def _add_evaluate_command(sub):
    evaluate = sub.add_parser(
        "evaluate", help="evaluate a saved model on the test split",
        description="Print the test accuracy, the per-class precision/recall/F1 report and "
                    "the confusion matrix of a model saved by `fastmlp train --save`. "
                    "--data-dir may hold only the two test files (t10k-*).")
    evaluate.add_argument("model", metavar="MODEL", help="model file written by --save")
    _add_data_options(evaluate, None, test_only=True)
    _add_allow_pickle_option(evaluate)
    evaluate.set_defaults(handler=_cmd_evaluate)


def _add_allow_pickle_option(parser):
    parser.add_argument(
        "--allow-pickle", action="store_true",
        help="also read a joblib (pickle) model file of an older fastmlp; loading a pickle "
             "runs code it contains, so only for files you trust")


def _add_predict_command(sub):
    predict = sub.add_parser(
        "predict", help="classify image files with a saved model",
        description="Print, for each image, its file (with the index in a stack), the most "
                    "probable class and its probability. Reads PNG, JPEG and the other "
                    'formats of Pillow (pip install "fastmlp[image]"), .npy files (one '
                    "image, a stack, or rows of pixels) and IDX files. Images are converted "
                    "to the model's input: colour to grayscale and resized when the sizes "
                    "differ, each with a note on stderr.")
    predict.add_argument("model", metavar="MODEL", help="model file written by --save")
    predict.add_argument("files", metavar="FILE", nargs="+", help="image files")
    predict.add_argument("--top", type=_positive_int, default=1, metavar="K",
                         help="print the K most probable classes (default: %(default)s)")
    predict.add_argument("--json", action="store_true",
                         help="print a JSON list instead: per image file, index, and the "
                              "predictions' label, class and probability")
    _add_allow_pickle_option(predict)
    predict.set_defaults(handler=_cmd_predict)


def _add_summary_command(sub):
    summary = sub.add_parser(
        "summary", help="print the per-layer table of an architecture",
        description="Print the layers, output shapes and parameter counts of an MLP.")
    summary.add_argument("--hidden", type=_hidden_sizes, default=(256,), metavar="SIZES",
                         help='hidden layer widths, e.g. 256 or 256,256; "" for none '
                              "(default: 256)")
    summary.add_argument("--activation", choices=sorted(_ACTIVATIONS), default="relu",
                         help="hidden activation (default: %(default)s)")
    summary.add_argument("--input", type=_positive_int, default=784, metavar="N",
                         help="input features (pixels) (default: %(default)s)")
    summary.add_argument("--classes", type=_int_from(2, "a number of classes >= 2"),
                         default=10, metavar="N", help="output classes (default: "
                                                       "%(default)s)")
    summary.set_defaults(handler=_cmd_summary)


def main(argv=None):
    """Run the ``fastmlp`` command with ``argv`` (default ``sys.argv[1:]``); return its
    exit status: 0, or 130 when Ctrl-C cut training short after an epoch (the run is
    still reported and saved).

    Other endings exit through ``SystemExit``: 1 on errors the user can fix (out of
    memory included), 2 on bad usage, 130 after Ctrl-C, 141 when stdout is a closed pipe.
    None of them prints a traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            return _run(argv)
        finally:  # argparse's --help and --version end in SystemExit: flushed here too
            if sys.stdout is not None:
                sys.stdout.flush()  # a closed pipe shows here when the output was short
    except CommandError as exc:
        _fail(str(exc), exc.status)
    except KeyboardInterrupt:
        _clear_line()
        print("fastmlp: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except MemoryError as exc:
        # numpy says what it could not allocate ("Unable to allocate 292. GiB for an
        # array with shape (784, 100000000) ..."); the core's message names its buffer.
        what = str(exc) or "an allocation failed"
        _fail(f"out of memory: {what}; use smaller --hidden layers or --batch-size")
    except BrokenPipeError:
        _silence_stdout()
        raise SystemExit(_BROKEN_PIPE_STATUS) from None


def _run(argv):
    if argv and argv[0] == "bench":
        return _cmd_bench(argv[1:])
    args = build_parser().parse_args(argv)
    if getattr(args, "resume", None) is not None:  # the saved run's options become defaults
        args = _resume_args(args, argv)
    elif getattr(args, "preset", None) is not None:  # the preset's values become defaults
        args = build_parser(_preset_defaults(args.preset)).parse_args(argv)
    if args.command == "train":
        _check_contradictions(args, argv)
    return args.handler(args) or 0


# Options of `train` that apply only with the values of other options: given together
# with values that make them meaningless, they are refused (bad usage, status 2).
_CONDITIONAL_OPTIONS = ("momentum", "nesterov", "warmup_epochs", "dropout")


def _check_contradictions(args, argv):
    """Refuse, before any data is loaded, an option the user typed that the rest of the
    run would ignore: --momentum or --nesterov with --solver adam, --nesterov without
    momentum, --warmup-epochs without the cosine schedule, --dropout without hidden
    layers, --validation-data without --early-stopping. Values a preset or a --resumed
    model brings are not refused."""
    typed = _typed(argv, _CONDITIONAL_OPTIONS)
    problem = None
    if args.solver != "sgd" and "momentum" in typed and args.momentum:
        problem = (f"--momentum applies to --solver sgd only; --solver {args.solver} would "
                   f"ignore it: leave out --momentum")
    elif args.solver != "sgd" and "nesterov" in typed:
        problem = (f"--nesterov applies to --solver sgd only; --solver {args.solver} would "
                   f"ignore it: leave out --nesterov")
    elif "nesterov" in typed and not args.momentum:
        problem = "--nesterov needs --momentum > 0 (it has no effect without momentum)"
    elif "warmup_epochs" in typed and args.warmup_epochs and args.lr_schedule != "cosine":
        problem = (f"--warmup-epochs is the warmup of --lr-schedule cosine; --lr-schedule "
                   f"{args.lr_schedule} would ignore it: add --lr-schedule cosine or leave "
                   f"out --warmup-epochs")
    elif "dropout" in typed and args.dropout and not args.hidden:
        problem = ('--dropout applies to the hidden layers, and --hidden "" has none: leave '
                   'out --dropout')
    elif args.validation_data is not None and not args.early_stopping:
        problem = "--validation-data is watched by --early-stopping; add it"
    if problem:
        raise CommandError(problem, status=2)


# The options of a saved run (its "config") that --resume takes as defaults.
_RESUMED_OPTIONS = (
    "dataset", "data_dir", "hidden", "activation", "init", "normalize", "solver", "lr",
    "momentum", "nesterov", "alpha", "batch_size", "epochs", "early_stopping", "patience",
    "seed", "lr_schedule", "warmup_epochs", "dropout", "weight_decay", "label_smoothing",
    "random_shift", "random_flip", "precision", "validation_data")


# Options that set what --resume keeps as it was saved (the initialization is done, and
# the shuffling continues from the saved random generator): other values than the
# model's are refused.
_KEPT_BY_RESUME = ("seed", "init")
_NOT_GIVEN = object()


def _typed(argv, names):
    """Which of the options ``names`` the command line sets itself (not a default's value,
    whether argparse's, a preset's or a --resumed model's)."""
    unset = build_parser(dict.fromkeys(names, _NOT_GIVEN)).parse_args(argv)
    return {k for k in names if getattr(unset, k) is not _NOT_GIVEN}


def _resume_args(args, argv):
    """The arguments of ``train --resume``: the saved run's options (a model fitted in
    Python: its own parameters) are the defaults of those the command line leaves out."""
    if args.preset is not None:  # bad usage: the command line alone says so
        raise CommandError("--resume continues a saved run with its own options; leave "
                           "out --preset", status=2)
    resumed = _load_model(args.resume)
    args = build_parser(_resume_defaults(*resumed)).parse_args(argv)
    args.resumed = resumed
    if args.dataset not in datasets._DATASETS:  # a default from the saved config
        raise CommandError(f"{args.resume} was trained on an unknown data set "
                           f"{args.dataset!r}; pass --dataset")
    args.given = _typed(argv, _KEPT_BY_RESUME)  # the others are the model's
    if not resumed[1].get("config"):
        _check_fitted_in_python(args)
    return args


# The command line's name of each estimator parameter that a model fitted in Python
# brings as a default of --resume (a preset's, and these).
_MODEL_OPTIONS = {**_PRESET_OPTIONS, "activation": "activation",
                  "nesterovs_momentum": "nesterov", "early_stopping": "early_stopping",
                  "precision": "precision"}
# Parameters no option of `train` sets: it trains with the estimator's defaults of them.
_NO_OPTION = ("shuffle", "class_weight", "beta_1", "beta_2", "epsilon",
              "validation_fraction", "early_stopping_metric", "power_t")


def _model_defaults(classifier):
    """The defaults of --resume for a model saved without the command line's config (one
    fitted in Python): its own training parameters, architecture and scaling."""
    params = classifier.get_params()
    defaults = {option: params[name] for name, option in _MODEL_OPTIONS.items()}
    scaler, seed = classifier.input_scaler_, params["random_state"]
    defaults.update(hidden=_trained_widths(classifier),
                    normalize="none" if scaler is None else scaler.mode,
                    seed=seed if isinstance(seed, int) else None)  # kept as it is
    if defaults["batch_size"] == "auto":  # None: argparse would parse the string "auto"
        defaults["batch_size"] = None
    if params["early_stopping"] or isinstance(params["n_iter_no_change"], int):
        defaults["patience"] = params["n_iter_no_change"]
    return defaults


def _check_fitted_in_python(args):
    """Refuse, before any data is loaded, to continue a model fitted in Python with a
    training parameter that no option of `train` (none given, or none at all) keeps:
    the run would change it."""
    from .estimator import MLPImageClassifier
    from .preprocessing import PixelScaler

    classifier = args.resumed[0]
    if not isinstance(classifier, MLPImageClassifier):
        raise _not_resumable(args.resume, classifier)
    params, usual = classifier.get_params(), MLPImageClassifier().get_params()
    odd = [f"{k}={params[k]!r}" for k in _NO_OPTION if params[k] != usual[k]]
    if args.early_stopping and params["tol"] != _EARLY_STOPPING_TOL:
        odd.append(f"tol={params['tol']!r}")  # --early-stopping's own tol would replace it
    scaler = classifier.input_scaler_
    if scaler is not None and scaler.get_params() != PixelScaler(scaler.mode).get_params():
        odd.append(f"input_scaler={scaler!r}")
    odd += [f"{name}={params[name]!r} (give --{option} to change it)"
            for name, option, ok in (
                ("learning_rate", "lr-schedule", args.lr_schedule in ("constant", "cosine")),
                ("dropout", "dropout", np.ndim(args.dropout) == 0),
                ("n_iter_no_change", "patience", isinstance(args.patience, int)))
            if not ok]
    if odd:
        raise CommandError(
            f"{args.resume} was fitted with {', '.join(odd)}, which `fastmlp train` has no "
            f"option to keep: continue training it in Python (fastmlp.load, then fit with "
            f"warm_start=True)")


def _not_resumable(path, model):
    """The error for a --resume model that is not an MLPImageClassifier."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        return CommandError(
            f"{path} holds a Pipeline; `fastmlp train --resume` continues an "
            f"MLPImageClassifier, which scales its own pixels: save "
            f"MLPImageClassifier(input_scaler=PixelScaler(...)) to continue it here, or "
            f"continue the pipeline in Python (fastmlp.load, then fit with warm_start=True)")
    return CommandError(f"{path} holds a {type(model).__name__}, not a model `fastmlp train` "
                        f"can continue (an MLPImageClassifier)")


def _trained_widths(classifier):
    """The hidden layer widths of a fitted classifier."""
    return tuple(c.shape[1] for c in classifier.coefs_[:-1])


def _resume_defaults(model, metadata):
    from .estimator import MLPImageClassifier

    if not metadata.get("config") and isinstance(model, MLPImageClassifier):
        return _model_defaults(model)
    config = metadata.get("config") or {}
    defaults = {k: config[k] for k in _RESUMED_OPTIONS if k in config}
    if "hidden" in defaults:
        defaults["hidden"] = tuple(defaults["hidden"])
    return defaults


def _preset_defaults(name):
    from ._presets import PRESETS

    preset = PRESETS[name]
    defaults = {_PRESET_OPTIONS[k]: v for k, v in preset.params.items()}
    defaults["hidden"] = tuple(defaults["hidden"])
    return {**defaults, "normalize": preset.normalize}


def _fail(message, status=1):
    _clear_line()
    print(f"fastmlp: error: {message}", file=sys.stderr)
    raise SystemExit(status) from None


# What a program killed by SIGPIPE reports in the shell (128 + 13), as `yes | head -1`
# does: the reader went away, so the output stops quietly, yet `set -o pipefail` still
# sees that the command did not finish.
_BROKEN_PIPE_STATUS = 141


def _silence_stdout():
    """Point stdout at the null device after its reader went away, so that the
    interpreter's final flush of what is still buffered fails neither (the recipe of
    Python's documentation of SIGPIPE)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


# --------------------------------------------------------------------------------------
# Data and model construction
# --------------------------------------------------------------------------------------

def _load_data(dataset, data_dir, download):
    """The loader's Bunch; with ``data_dir``, only that directory (or DIR/<dataset>) counts.
    With ``download``, a data set not found is downloaded into DIR/<dataset>, or without
    ``data_dir`` into the user cache."""
    spec = datasets._DATASETS[dataset]
    if data_dir is not None:
        data_dir = _data_dir_path(data_dir)
    missing = not datasets._in_data_home(dataset, data_dir)
    if data_dir is not None and missing and not download:
        raise CommandError(
            f"{data_dir} does not hold the four IDX files of {spec.title} "
            f"({', '.join(datasets._FILE_NAMES)}, gzipped or not), neither directly nor "
            f"in {os.path.join(data_dir, dataset)}; add --download to fetch them there")
    try:
        if missing and download:  # with DIR, not from another directory holding them
            datasets._download_to_data_home(dataset, data_dir)
        return spec.loader(data_home=data_dir, download=download)
    except FileNotFoundError as exc:
        if download:  # not the lookup's: the download's
            raise CommandError(f"could not load {spec.title}: {exc}") from None
        raise CommandError(datasets._command_line_not_found(dataset)) from None
    except (OSError, ValueError) as exc:
        raise CommandError(f"could not load {spec.title}: {exc}") from None


def _load_test_data(dataset, data_dir, download):
    """The test split (``data_test``, ``target_test``, ``images_test``, ``target_names``
    and ``directory``, where it was read), without the training files: from the first
    directory holding the two test files of ``data_dir`` (it, or DIR/<dataset>), or else
    of the loaders' lookup. With ``download``, the two files are fetched when found
    nowhere, into DIR/<dataset> or the user cache."""
    from sklearn.utils import Bunch

    spec, test_files = datasets._DATASETS[dataset], datasets._FILE_NAMES[2:]
    if data_dir is not None:
        data_dir = _data_dir_path(data_dir)
        directories = datasets._data_home_dirs(dataset, data_dir)
    else:
        directories = [d for d, _ in datasets._search_dirs(dataset, None)]
    found = _test_files_in(directories)
    if found is None and download:
        try:
            datasets._download_to_data_home(dataset, data_dir, names=test_files)
        except OSError as exc:
            raise CommandError(f"could not load {spec.title}: {exc}") from None
        found = _test_files_in([datasets._download_dir(dataset, data_dir)])
    if found is None and data_dir is None:
        raise CommandError(datasets._command_line_not_found(dataset, names=test_files))
    if found is None:
        raise CommandError(
            f"{data_dir} does not hold the test files of {spec.title} ({test_files[0]} "
            f"and {test_files[1]}, gzipped or not), neither directly nor in "
            f"{os.path.join(data_dir, dataset)}; add --download to fetch them there")
    try:
        images = datasets.read_idx(found["test_images"])
        labels = datasets.read_idx(found["test_labels"])
        datasets._check_split(images, labels, found["test_images"], found["test_labels"])
    except (OSError, ValueError) as exc:
        raise CommandError(f"could not load the test split: {exc}") from None
    return Bunch(data_test=images.reshape(len(images), -1), images_test=images,
                 target_test=labels.astype(np.int64),
                 target_names=np.asarray(spec.target_names),
                 directory=os.path.dirname(found["test_images"]))


def _test_files_in(directories):
    """{role: path} of the two test files in the first of the directories holding both,
    or None."""
    for directory in directories:
        found, _ = datasets._files_in(directory)
        if {"test_images", "test_labels"} <= set(found):
            return found
    return None


def _data_dir_path(data_dir):
    """--data-dir with ~ expanded; CommandError if it is something other than a
    directory (a missing one is the data set's absence, told by the caller)."""
    path = os.path.expanduser(data_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise CommandError(f"--data-dir {data_dir} is not a directory")
    return path


def _architecture(n_features, hidden, activation, n_classes):
    label = _core.ACTIVATION_LABELS[activation]
    inner = "".join(f"-{h}({label})" for h in hidden)
    text = f"{n_features}{inner}-{n_classes}"
    return text + (" (softmax regression)" if not hidden else "")


def _make_scaler(normalize):
    """The classifier's input_scaler for --normalize: the core scales the uint8 pixels as
    it gathers them, so no float32 copy of the data set is made ("none": no scaler; the
    classifier then trains on a float32 copy of the raw pixel values)."""
    if normalize == "none":
        return None
    from .preprocessing import PixelScaler

    return PixelScaler(mode=normalize)


def _check_output_path(path, what):
    """Fail before training, not after it, when an output file cannot be written."""
    if path is None:
        return
    parent = os.path.dirname(os.path.abspath(path)) or "."
    try:
        check_target(path)  # a directory, a FIFO or a device is never replaced
    except OSError as exc:
        raise CommandError(f"cannot write {what} {path}: {exc}") from None
    if not os.path.isdir(parent):
        raise CommandError(f"cannot write {what} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise CommandError(f"cannot write {what} {path}: directory {parent} is not writable")


# --------------------------------------------------------------------------------------
# Progress and per-epoch reporting
# --------------------------------------------------------------------------------------

def _stderr_is_terminal():
    return stderr_is_terminal()


def _class_mismatch(classes, labels, all_labels=None):
    """Why a model of these classes_ cannot be scored on these labels (integers of a data
    set), or None when every label is one of its classes. With ``all_labels`` (how to
    name the labels: "0 to 9"), every class must also be one of the labels."""
    classes, labels = np.asarray(classes), np.unique(labels)
    if classes.dtype.kind not in "biuf":
        return (f"the model's classes are {_some(classes)}, not the data set's integer "
                f"labels {_some(labels)}")
    for missing, shown in ((np.setdiff1d(labels, classes), _some(labels)),
                           (np.setdiff1d(classes, labels) if all_labels else (), all_labels)):
        if len(missing):
            return (f"the model's classes ({_some(classes)}) do not match the data set's "
                    f"labels ({shown}): {_some(missing)} are not among them")
    return None


def _some(values, limit=12):
    """A short text of a few values: "[0, 1, 2]", "[0, 1, ..., 99] (100 values)"."""
    values = [v.item() if hasattr(v, "item") else v for v in np.asarray(values).ravel()]
    if len(values) <= limit:
        return repr(values)
    return f"[{', '.join(map(repr, values[:limit // 2]))}, ..., {values[-1]!r}] " \
           f"({len(values)} values)"


def _test_metrics(estimator, X_test, y_test):
    """(mean log-loss, accuracy, predictions) of ``estimator`` on the test split; a
    ValueError when the model's classes are not the split's labels."""
    classes = estimator.classes_
    mismatch = _class_mismatch(classes, y_test)
    if mismatch:
        raise ValueError(mismatch)
    logp = estimator.predict_log_proba(X_test)
    idx = np.searchsorted(classes, y_test)
    loss = float(-np.mean(logp[np.arange(len(y_test)), idx]))
    y_pred = classes[np.argmax(logp, axis=1)]
    return loss, float(np.mean(y_pred == y_test)), y_pred


class _EpochReporter:
    """The ``fit`` callback: progress bar between chunks, test metrics after each epoch."""

    def __init__(self, X_test, y_test, n_epochs, quiet, progress):
        self.X_test, self.y_test = X_test, y_test
        self.n_epochs = n_epochs
        self.quiet = quiet
        self.progress = progress
        self.rows = []
        self.last = None  # the latest progress event
        self.epoch_start = time.perf_counter()

    def __call__(self, estimator, info):
        if info["event"] == "progress":
            self.last = info
            if self.progress:
                _draw_bar(info["epoch"], self.n_epochs, info["samples_done"],
                          info["n_samples"], info["loss"], info["accuracy"],
                          time.perf_counter() - self.epoch_start)
            return False
        t0 = time.perf_counter()
        test_loss, test_acc, _ = _test_metrics(estimator, self.X_test, self.y_test)
        test_time = time.perf_counter() - t0
        row = {"epoch": info["epoch"], "loss": info["loss"], "accuracy": info["accuracy"],
               "test_loss": test_loss, "test_accuracy": test_acc,
               "learning_rate": info["learning_rate"], "train_time": info["time"],
               "test_time": test_time, "time": info["time"] + test_time}
        for key in ("val_loss", "val_accuracy"):
            if key in info:
                row[key] = info[key]
        self.rows.append(row)
        _clear_line()
        if not self.quiet:
            print(f"Epoch [{row['epoch']}/{self.n_epochs}], Loss: {row['loss']:.4f}, "
                  f"Accuracy: {100 * row['accuracy']:.2f}%")
            if "val_accuracy" in row:
                print(f"Validation Loss: {row['val_loss']:.4f}, "
                      f"Validation Accuracy: {100 * row['val_accuracy']:.2f}%")
            print(f"Test Loss: {test_loss:.4f}, Test Accuracy: {100 * test_acc:.2f}%")
            print(f"Epoch time: {row['time']:.2f} s (training {row['train_time']:.2f} s, "
                  f"test {test_time:.2f} s)", flush=True)
        self.epoch_start = time.perf_counter()
        return False


def _summary_table(rows):
    head = ("Epoch", "Train loss", "Train acc", "Test loss", "Test acc", "Time")
    cells = [(str(r["epoch"]), f"{r['loss']:.4f}", f"{100 * r['accuracy']:.2f}%",
              f"{r['test_loss']:.4f}", f"{100 * r['test_accuracy']:.2f}%",
              f"{r['time']:.1f} s") for r in rows]
    widths = [max(len(head[i]), *(len(c[i]) for c in cells)) for i in range(len(head))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------

def _cmd_train(args):
    wall_start = time.perf_counter()
    _prepare_outputs(args)
    data = _load_data(args.dataset, args.data_dir, args.download)
    title = datasets._DATASETS[args.dataset].title
    y_train, y_test = data.target, data.target_test
    _check_classes(y_train, y_test)
    activation = _ACTIVATIONS[args.activation]
    images = data.get("images")
    image_shape = images.shape[1:] if images is not None else None
    if args.batch_size is None:  # --resume of a model fitted in Python with "auto"
        args.batch_size = _auto_batch_size(args, len(y_train))
    _clip_batch_size(args, len(y_train))
    _note_a_warmup_as_long_as_the_run(args)
    classifier = _classifier_to_train(args, activation, image_shape)
    X_train, X_test = data.data, data.data_test  # uint8, scaled inside the core
    load_time = time.perf_counter() - wall_start

    n_features, n_classes = X_train.shape[1], len(np.unique(y_train))
    arch = _architecture(n_features, args.hidden, activation, n_classes)
    n_params = classifier.summary(n_features, n_classes).total_params
    _check_memory(arch, n_params)
    if not args.quiet:
        _print_header(args, data, title, arch, n_params)

    before = getattr(args, "resumed", (None, {}))[1].get("history", [])
    done = getattr(classifier, "n_iter_", 0)  # resumed: also a model fitted in Python
    reporter = _EpochReporter(X_test, y_test, done + args.epochs, args.quiet,
                              progress=not args.quiet and _stderr_is_terminal())
    validation = _validation_data(args, X_train.shape[1])
    train_time, interrupted = _train(classifier, X_train, y_train, reporter, args, validation)
    test_loss, test_acc, y_pred = _test_metrics(classifier, X_test, y_test)
    wall_time = time.perf_counter() - wall_start
    note = _poor_result_note(test_acc, n_classes, args, (len(y_train), len(reporter.rows)))
    _print_results(args, reporter.rows, test_loss, test_acc, note, wall_time, train_time,
                   load_time)

    config = _run_config(args, activation)
    final = {"train_loss": reporter.rows[-1]["loss"],
             "train_accuracy": reporter.rows[-1]["accuracy"],
             "test_loss": test_loss, "test_accuracy": test_acc,
             "epochs_trained": done + len(reporter.rows)}
    if args.save is not None:
        _save_model(args, classifier, {
            "dataset": args.dataset, "target_names": [str(n) for n in data.target_names],
            "image_shape": None if image_shape is None else list(image_shape),
            "architecture": arch, "config": config, "history": before + reporter.rows,
            "final": final})
    if args.json is not None:
        _write_json(args, {"command": "train", "config": config, "architecture": arch,
                           "n_parameters": n_params, "n_train": len(y_train),
                           "n_test": len(y_test), "history": reporter.rows, "final": final,
                           "wall_time": wall_time, "interrupted": interrupted})
    if args.plots is not None:
        _save_plots(args, reporter.rows, y_test, y_pred, data, title)
    return 130 if interrupted else 0  # Ctrl-C is reported even when the run was saved


def _auto_batch_size(args, n_train):
    """The batch size that batch_size="auto" gives for this run."""
    from .estimator import MLPImageClassifier

    return MLPImageClassifier(batch_size="auto")._batch_size(_fit_samples(args, n_train))


def _clip_batch_size(args, n_train):
    """A --batch-size beyond the samples trained on becomes their count, with a note in
    the command's words (fit would clip it with a warning in the estimator's)."""
    n = _fit_samples(args, n_train)
    if args.batch_size > n:
        _note(f"--batch-size {args.batch_size:,} is more than the {n:,} samples trained "
              f"on: each batch holds all of them")
        args.batch_size = n


def _note_a_warmup_as_long_as_the_run(args):
    """A note when the cosine schedule's warmup lasts the whole run: the learning rate
    then only rises, never decays (legal, and likely not what was meant)."""
    if args.lr_schedule == "cosine" and args.warmup_epochs >= args.epochs:
        _note(f"--warmup-epochs {args.warmup_epochs:g} is not shorter than the run "
              f"({_count(args.epochs, 'epoch')}): the learning rate rises for the whole run "
              f"and never decays")


def _fit_samples(args, n_train):
    """How many of the n_train training samples fit trains on: those that early stopping
    does not hold out."""
    if args.early_stopping and args.validation_data is None:
        from .estimator import MLPImageClassifier

        fraction = MLPImageClassifier().validation_fraction
        n_train -= math.ceil(fraction * n_train)  # train_test_split's count
    return n_train


def _classifier_to_train(args, activation, image_shape):
    """A new classifier, or with --resume the saved one, set to continue training."""
    if getattr(args, "resumed", None) is None:
        return _make_classifier(args, activation, image_shape,
                                input_scaler=_make_scaler(args.normalize))
    return _resumed_classifier(args, activation, image_shape)


def _resumed_classifier(args, activation, image_shape):
    """The saved classifier set to continue training with the command line's training
    options; its architecture and input scaling stay."""
    from .estimator import MLPImageClassifier

    classifier, _ = args.resumed
    if not isinstance(classifier, MLPImageClassifier):
        raise _not_resumable(args.resume, classifier)
    scaler = getattr(classifier, "input_scaler_", None)
    saved = (_trained_widths(classifier), classifier.activation,
             "none" if scaler is None else scaler.mode)
    if (tuple(args.hidden), activation, args.normalize) != saved:
        raise CommandError(
            f"--resume continues the model as it is (--hidden {','.join(map(str, saved[0]))} "
            f"--activation {saved[1]} --normalize {saved[2]}); leave out the options that "
            f"change it")
    given = getattr(args, "given", set())
    kept = {"seed": ("--seed", classifier.random_state),
            "init": ("--init", classifier.weight_init)}
    changed = [f"{kept[k][0]} {getattr(args, k)}" for k in _KEPT_BY_RESUME
               if k in given and getattr(args, k) != kept[k][1]]
    if changed:
        was = " ".join(f"{option} {value}" for option, value in kept.values()
                       if isinstance(value, (int, str)))  # not a RandomState
        raise CommandError(
            f"--resume continues the model as it was initialized and shuffled "
            f"({was or 'random_state None'}); {' and '.join(changed)} would have no "
            f"effect: leave out {', '.join(c.split()[0] for c in changed)}")
    params = _make_classifier(args, activation, image_shape).get_params()
    for fixed in ("hidden_layer_sizes", "activation", "weight_init", "random_state",
                  "input_scaler"):
        del params[fixed]
    classifier.set_params(**{**params, "warm_start": True})
    if not args.early_stopping:  # as for a new run: the stopping rule never fires
        classifier.n_iter_no_change = classifier.n_iter_ + args.epochs + 1
    if not args.quiet:
        print(f"Resuming {args.resume}: {_count(classifier.n_iter_, 'epoch')} trained so far")
    if classifier._optimizer_state is None and (args.solver == "adam" or args.momentum
                                                or args.lr_schedule == "cosine"):
        _note(f"{args.resume} was saved without its optimizer state "
              f"(--save-optimizer-state): the optimizer starts afresh from its weights")
    return classifier


def _prepare_outputs(args):
    """Fail before training, not after it, when an output cannot be written."""
    if args.plots is not None:
        try:
            _plots.require_matplotlib()
        except ImportError as exc:
            raise CommandError(str(exc)) from None
        try:
            os.makedirs(args.plots, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"cannot create the plot directory {args.plots}: "
                               f"{exc.strerror or exc}") from None
    _check_distinct_files(args)
    _check_output_path(args.save, "model file")
    _check_output_path(args.json, "JSON file")


def _same_file(a, b):
    """Whether two paths name one file (also through a symbolic or hard link)."""
    if os.path.realpath(os.path.expanduser(a)) == os.path.realpath(os.path.expanduser(b)):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet: different files
        return False


def _check_distinct_files(args):
    """Refuse (bad usage, status 2) an output file that is another output or an input of
    the run: the later write would replace the other file, e.g. --json over the model
    --save wrote, or over the --resume model. --save may replace the --resume model."""
    outputs = [(f"--{name}", path) for name, path in (("save", args.save), ("json", args.json))
               if path is not None]
    inputs = [("--resume", args.resume)] if args.resume is not None else []
    inputs += [("--validation-data", path) for path in args.validation_data or ()]
    for i, (option, path) in enumerate(outputs):
        others = outputs[:i] + inputs
        for other, other_path in others:
            if option == "--save" and other == "--resume":
                continue
            if _same_file(path, other_path):
                raise CommandError(f"{option} {path} and {other} {other_path} are the same "
                                   f"file: the {option} output would overwrite it; give "
                                   f"{option} another file", status=2)


def _memory_limit():
    """Bytes a process may use here: physical memory, or less under ``ulimit -v``."""
    limits = []
    with contextlib.suppress(ValueError, OSError, AttributeError):
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    return min(limits) if limits else None


def _check_memory(arch, n_params):
    """Refuse, before anything is allocated, a model whose float32 weights alone exceed
    the memory this process may use (training needs several times as much)."""
    limit = _memory_limit()
    need = 4 * n_params
    if limit is not None and need > limit:
        raise CommandError(
            f"the model {arch} has {n_params:,} parameters, {need / 2**30:,.1f} GiB of "
            f"float32 weights alone, more than the {limit / 2**30:,.1f} GiB of memory "
            f"available here; use smaller --hidden layers")


def _check_classes(y_train, y_test):
    missing = np.setdiff1d(np.unique(y_test), np.unique(y_train))
    if len(np.unique(y_train)) < 2 or missing.size:
        raise CommandError(f"the training split must hold at least two classes and every "
                           f"class of the test split (missing: {missing.tolist()})")


# The least improvement of the validation score that --early-stopping counts.
_EARLY_STOPPING_TOL = 1e-4


def _make_classifier(args, activation, image_shape=None, input_scaler=None):
    from .estimator import MLPImageClassifier

    # Training runs exactly --epochs epochs unless --early-stopping: with tol=0 and a
    # patience longer than the run, the loss-based stopping rule can never fire.
    return MLPImageClassifier(
        hidden_layer_sizes=args.hidden, activation=activation, solver=args.solver,
        alpha=args.alpha, batch_size=args.batch_size, learning_rate=args.lr_schedule,
        learning_rate_init=args.lr, max_iter=args.epochs, shuffle=True,
        random_state=args.seed, momentum=args.momentum, nesterovs_momentum=args.nesterov,
        early_stopping=args.early_stopping,
        tol=_EARLY_STOPPING_TOL if args.early_stopping else 0.0,
        n_iter_no_change=args.patience if args.early_stopping else args.epochs + 1,
        weight_init=args.init, n_threads=args.threads, warmup_epochs=args.warmup_epochs,
        dropout=args.dropout, weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing, random_shift=args.random_shift,
        random_flip=args.random_flip, image_shape=image_shape, input_scaler=input_scaler,
        precision=args.precision)


def _optimizer_label(args):
    """E.g. "SGD", "SGD (momentum 0.9, Nesterov)", "Adam"."""
    if args.solver != "sgd":
        return "AdamW" if args.weight_decay else "Adam"
    label = "SGD"
    if args.momentum:
        label += f" (momentum {args.momentum:g}{', Nesterov' if args.nesterov else ''})"
    return label


def _print_header(args, data, title, arch, n_params):
    """The data, the model and the training configuration, before the first epoch."""
    print(f"{title}: {len(data.target):,} training and {len(data.target_test):,} test images "
          f"from {os.path.dirname(data.filenames['train_images'])}")
    print(f"Model: {arch}, {n_params:,} parameters, {args.init} initialization")
    print(f"Training: {_optimizer_label(args)}, lr {args.lr:g}, batch {args.batch_size}, "
          f"{args.epochs} epoch{'s' if args.epochs != 1 else ''}, "
          f"{_NORMALIZATIONS[args.normalize]}, "
          + (f"seed {args.seed}" if args.seed is not None else "no integer seed")
          + (f", L2 alpha {args.alpha:g}" if args.alpha else "")
          + (", early stopping" if args.early_stopping else "")
          + _precision_label(args.precision), flush=True)
    extras = _regularization_label(args)
    if extras:
        print(f"Regularization: {extras}", flush=True)


def _precision_label(precision):
    """", bfloat16 (amx kernel)" for a bfloat16 run; "" in float32."""
    if precision != "bfloat16":
        return ""
    if core_precision(precision, warn=False) != "bfloat16":
        return ", bfloat16 asked for but no bfloat16 kernel here: float32"
    return f", bfloat16 ({_core.active_bf16_kernel()} kernel)"


def _regularization_label(args):
    """E.g. "cosine schedule (1 warmup epoch), dropout 0.2, ..." or "" for none."""
    parts = []
    if args.lr_schedule == "cosine":
        plural = "s" if args.warmup_epochs != 1 else ""
        parts.append(f"cosine schedule ({args.warmup_epochs:g} warmup epoch{plural})")
    for value, text in ((args.dropout, "dropout {:g}"), (args.weight_decay, "weight decay {:g}"),
                        (args.label_smoothing, "label smoothing {:g}"),
                        (args.random_shift, "random shifts of up to {} px")):
        if value:
            parts.append(text.format(value))
    if args.random_flip:
        parts.append("random horizontal flips")
    return ", ".join(parts)


def _validation_data(args, n_features):
    """--validation-data as fit's X_val and y_val keywords (empty without the option)."""
    if args.validation_data is None:
        return {}
    images, labels = (_read_array(path, what) for path, what in
                      zip(args.validation_data, ("validation images", "validation labels")))
    if images.ndim < 2 or int(np.prod(images.shape[1:])) != n_features:
        raise CommandError(f"the validation images {args.validation_data[0]} have shape "
                           f"{images.shape}; the model takes images of {n_features} pixels")
    if labels.shape != (len(images),):
        raise CommandError(f"{args.validation_data[1]} holds {labels.shape} labels for "
                           f"{len(images)} validation images")
    for array, path, what in ((images, args.validation_data[0], "pixel values"),
                              (labels, args.validation_data[1], "labels")):
        if array.dtype.kind in "fc":
            bad = int(np.count_nonzero(~np.isfinite(array)))
            if bad:
                raise CommandError(f"the validation data {path} holds {bad:,} NaN or "
                                   f"infinite {what} (of {array.size:,}); every value must "
                                   f"be a finite number")
    return {"X_val": images.reshape(len(images), -1), "y_val": labels}


def _read_array(path, what):
    """An IDX (.gz or raw) or .npy file as an array; CommandError if it is neither."""
    from ._images import ImageFileError, read_array

    try:
        return read_array(path)
    except ImageFileError as exc:
        raise CommandError(f"cannot read the {what} {path}: {exc}") from None


def _train(classifier, X_train, y_train, reporter, args, validation):
    """Fit, reporting every epoch; return (seconds, whether Ctrl-C cut it short).

    An interrupt before the first epoch ended exits with status 130; one after it keeps
    the epochs trained, and the run is reported and saved as usual.
    """
    train_start = reporter.epoch_start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            classifier.fit(X_train, y_train, callback=reporter, **validation)
        except ValueError as exc:
            raise CommandError(_training_failed(exc, args, reporter)) from None
    train_time = time.perf_counter() - train_start
    interrupted = _report_warnings(caught)
    if interrupted:
        _clear_line()
        print(f"fastmlp: interrupted after {len(reporter.rows)} of {args.epochs} epochs",
              file=sys.stderr)
        if not reporter.rows:
            raise SystemExit(130)
    return train_time, interrupted


def _report_warnings(caught):
    """Print the warnings fit raised; return whether one says that it was interrupted."""
    from sklearn.exceptions import ConvergenceWarning

    interrupted = False
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            continue  # the run length is what the user asked for
        if issubclass(w.category, TrainingInterruptedWarning):
            interrupted = True
            continue
        _clear_line()
        print(f"fastmlp: warning: {w.message}", file=sys.stderr)
    return interrupted


def _print_results(args, rows, test_loss, test_acc, note, wall_time, train_time,
                   load_time):
    if args.quiet:
        print(f"Test Accuracy: {100 * test_acc:.2f}%")
    else:
        print()
        print(_summary_table(rows))
        if args.early_stopping:
            print(f"Kept the weights of the best validation epoch: test loss "
                  f"{test_loss:.4f}, test accuracy {100 * test_acc:.2f}%")
        print(f"Total wall time: {wall_time:.1f} s (training and per-epoch tests "
              f"{train_time:.1f} s, data loading and scaling {load_time:.1f} s)", flush=True)
    if note:
        _note(note)


def _run_config(args, activation):
    """The options of the run, as saved with the model and in the JSON record."""
    return {
        # Paths absolute: --resume may run from another directory.
        "dataset": args.dataset, "hidden": list(args.hidden),
        "data_dir": (None if args.data_dir is None
                     else os.path.abspath(os.path.expanduser(args.data_dir))),
        "activation": activation, "init": args.init, "normalize": args.normalize,
        "solver": args.solver, "lr": args.lr, "momentum": args.momentum,
        "nesterov": args.nesterov, "alpha": args.alpha, "batch_size": args.batch_size,
        "epochs": args.epochs, "early_stopping": args.early_stopping,
        "patience": args.patience, "seed": args.seed, "threads": args.threads,
        "preset": args.preset, "lr_schedule": args.lr_schedule,
        "warmup_epochs": args.warmup_epochs, "dropout": args.dropout,
        "weight_decay": args.weight_decay, "label_smoothing": args.label_smoothing,
        "random_shift": args.random_shift, "random_flip": args.random_flip,
        "precision": args.precision,
        "validation_data": (None if args.validation_data is None else
                            [os.path.abspath(os.path.expanduser(p))
                             for p in args.validation_data]),
    }


def _save_model(args, model, metadata):
    from . import io

    try:
        io.save(model, args.save, include_optimizer_state=args.save_optimizer_state,
                metadata=metadata)
    except OSError as exc:
        raise CommandError(f"cannot save the model to {args.save}: "
                           f"{exc.strerror or exc}; the previous file, if any, is "
                           f"unchanged") from None
    if not args.quiet:
        print(f"Saved the model to {args.save} (evaluate it with: fastmlp evaluate {args.save})")


def _write_json(args, doc):
    from . import __version__

    doc = {"fastmlp_version": __version__, **doc, "machine": _machine.machine_info()}
    text = json.dumps(doc, indent=2) + "\n"
    try:
        with atomic_file(args.json) as f:
            f.write(text.encode("utf-8"))
    except OSError as exc:
        raise CommandError(f"cannot write {args.json}: {exc.strerror or exc}; the previous "
                           f"file, if any, is unchanged") from None
    if not args.quiet:
        print(f"Wrote the run's history to {args.json}")


def _save_plots(args, rows, y_test, y_pred, data, title):
    names = [str(n) for n in data.target_names]
    try:
        paths = _plots.write_plots(args.plots, rows, y_test, y_pred, data.images_test, names,
                                   title)
    except OSError as exc:
        raise CommandError(str(exc)) from None
    if not args.quiet:
        print(f"Wrote plots: {', '.join(str(p) for p in paths)}")


def _advice(args):
    step = penalty_overshoot(args.alpha, args.lr, args.batch_size)
    if args.solver == "sgd" and step is not None:
        return (f"the L2 penalty --alpha {args.alpha:g} is too large: each step takes "
                f"lr * alpha / batch size = {step:.3g} times the weights off them, which "
                f"overshoots zero from 1 on; lower --alpha (e.g. --alpha 1e-4) or the "
                f"learning rate")
    if args.normalize == "none":
        return (f"raw pixels 0..255 make steps of lr {args.lr:g} far too large: scale the "
                f"inputs with --normalize symmetric (the default) or use a much smaller "
                f"learning rate, e.g. --lr 1e-5")
    return f"lower the learning rate, e.g. --lr {args.lr / 100:g}"


def _training_failed(exc, args, reporter):
    """The message for a ValueError raised by fit, with advice when training diverged."""
    if not isinstance(exc, TrainingDivergedError):
        return f"training failed: {exc}"
    where = ""
    if reporter.last is not None:
        where = (f" in epoch {reporter.last['epoch']} (within the first "
                 f"{reporter.last['samples_done']:,} samples)")
    elif reporter.rows:
        where = f" after epoch {reporter.rows[-1]['epoch']}"
    return f"training diverged{where}: the loss became infinite or NaN; {_advice(args)}"


def _poor_result_note(test_accuracy, n_classes, args, run=None):
    """Advice when training ran but the model is hardly better than guessing; ``run`` is
    (training samples, epochs trained), to tell a run of too few steps."""
    chance = 1.0 / n_classes
    if test_accuracy >= 2 * chance:
        return None
    advice = (run and _few_steps_advice(args, *run)) or _advice(args)
    return (f"the test accuracy {100 * test_accuracy:.2f}% is barely above chance "
            f"({100 * chance:.0f}%); {advice}")


# Fewer optimizer steps than these, per epoch or in the whole run, are too few to learn
# from: a smaller learning rate would not help.
_FEW_STEPS_PER_EPOCH, _FEW_STEPS = 10, 100


def _few_steps_advice(args, n_train, epochs):
    """The advice for a run of too few optimizer steps, or None."""
    n = _fit_samples(args, n_train)
    batch = min(args.batch_size, n)  # as _clip_batch_size made it for the run
    per_epoch = -(-n // batch)
    if per_epoch >= _FEW_STEPS_PER_EPOCH and per_epoch * epochs >= _FEW_STEPS:
        return None
    smaller = max(1, min(64, n // _FEW_STEPS))
    fix = (f"a smaller --batch-size (e.g. --batch-size {smaller}) or more --epochs"
           if smaller < batch else "more --epochs")
    return (f"the run made only {_count(per_epoch * epochs, 'optimizer step')} "
            f"({_count(epochs, 'epoch')} of {_count(per_epoch, 'step')}: {n:,} training "
            f"samples in batches of {batch:,}), too few to learn from: use {fix}")


def _note(message):
    """A note on stderr, on a line of its own even while a progress bar is shown."""
    _clear_line()
    print(f"fastmlp: note: {message}", file=sys.stderr)


def _count(n, noun):
    """E.g. "1 epoch", "3 epochs"."""
    return f"{n:,} {noun}{'s' if n != 1 else ''}"


# --------------------------------------------------------------------------------------
# evaluate, summary, bench
# --------------------------------------------------------------------------------------

def _load_model(path, allow_pickle=False):
    """(model, metadata) from a file written by ``train --save``; with ``allow_pickle``
    also from a joblib file of an older fastmlp (a dict with the model, or the model)."""
    from . import io

    if os.path.isdir(path):
        raise CommandError(f"model file {path} is a directory")
    if not os.path.isfile(path):
        state = "is not a regular file" if os.path.exists(path) else "does not exist"
        raise CommandError(f"model file {path} {state}")
    try:
        return io.load(path, return_metadata=True)
    except (OSError, ValueError) as exc:
        error = exc
    if not allow_pickle:
        hint = ("; if it is a joblib model file of an older fastmlp and you trust it, pass "
                "--allow-pickle (loading a pickle runs code it contains)"
                if _looks_like_a_pickle(path) else "")
        raise CommandError(f"cannot read the model file {path}: {error}{hint}")
    return _load_pickled_model(path)


def _looks_like_a_pickle(path):
    """Whether the file starts as a pickle (protocol 2+) or a joblib-compressed one."""
    with open(path, "rb") as f:
        start = f.read(3)
    return start[:1] == b"\x80" or start[:2] in (b"\x1f\x8b", b"\x78\x9c", b"\x78\x01",
                                                  b"BZ") or start == b"\xfd7z"


def _load_pickled_model(path):
    import joblib

    print(f"fastmlp: warning: reading {path} as a pickle (joblib) file, which runs code it "
          f"contains; save the model again with `fastmlp train --save` for a file that "
          f"does not", file=sys.stderr)
    try:
        obj = joblib.load(path)
    except Exception as exc:  # unpickling can fail in many ways; none is a bug here
        raise CommandError(f"cannot read the model file {path}: "
                           f"{type(exc).__name__}: {exc}") from None
    if isinstance(obj, dict) and hasattr(obj.get("model"), "predict_log_proba"):
        from . import io

        metadata = {k: v for k, v in obj.items() if k != "model"}
        problem = io._metadata_problem(_plain(metadata))
        if problem:
            raise CommandError(f"cannot read the model file {path}: corrupt metadata: "
                               f"{problem}")
        return obj["model"], metadata
    if hasattr(obj, "predict_log_proba") and hasattr(obj, "classes_"):
        return obj, {}
    raise CommandError(f"{path} does not hold a fastmlp model (expected a file written by "
                       f"`fastmlp train --save`)")


def _plain(value):
    """A pickled file's metadata as the JSON values a model file would hold (tuples as
    lists, NumPy scalars as numbers), for its checks."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _cmd_evaluate(args):
    from sklearn.metrics import classification_report, confusion_matrix

    model, meta = _load_model(args.model, args.allow_pickle)
    dataset = args.dataset or meta.get("dataset") or "fashion-mnist"
    if dataset not in datasets._DATASETS:
        raise CommandError(f"the model names an unknown data set {dataset!r}; pass --dataset")
    data = _load_test_data(dataset, args.data_dir, args.download)
    names = [str(n) for n in data.target_names]
    X_test, y_test = data.data_test, data.target_test
    title = datasets._DATASETS[dataset].title
    mismatch = (_class_mismatch(model.classes_, np.arange(len(names)),
                                all_labels=f"0 to {len(names) - 1}")
                or _class_mismatch(model.classes_, y_test))
    if mismatch:
        raise CommandError(f"{args.model} is not a model of {title}: {mismatch}")
    try:
        loss, accuracy, y_pred = _test_metrics(model, X_test, y_test)
    except ValueError as exc:
        raise CommandError(f"the model does not fit this data: {exc}") from None

    arch = meta.get("architecture")
    print(f"Model: {args.model}" + (f" ({arch})" if arch else ""))
    print(f"{title} test set: {len(y_test):,} images from {data.directory}")
    print(f"Test Loss: {loss:.4f}, Test Accuracy: {100 * accuracy:.2f}% "
          f"({int(np.sum(y_pred == y_test))}/{len(y_test)})")
    print()
    labels = np.arange(len(names))
    print(classification_report(y_test, y_pred, labels=labels, target_names=names, digits=4,
                                zero_division=0))
    cm = confusion_matrix(y_test, y_pred, labels=labels)
    print("Confusion matrix (rows: true class, columns: predicted class):")
    row_names = [f"{i} {n}" for i, n in enumerate(names)]
    name_w = max(len(n) for n in row_names)
    cell_w = max(4, len(str(cm.max())) + 1)
    print(" " * name_w + "".join(str(i).rjust(cell_w) for i in labels))
    for name, row in zip(row_names, cm):
        print(name.ljust(name_w) + "".join(str(v).rjust(cell_w) for v in row))
    return 0


def _cmd_predict(args):
    from . import _images

    model, meta = _load_model(args.model, args.allow_pickle)
    classifier = model.steps[-1][1] if hasattr(model, "steps") else model
    try:
        geometry = _images.model_geometry(
            classifier.n_features_in_,
            meta.get("image_shape") or getattr(classifier, "image_shape", None))
    except _images.ImageFileError as exc:
        raise CommandError(str(exc)) from None
    entries, failed = [], 0
    for path in args.files:
        try:
            entries += _predict_file(model, path, geometry, args.top, meta)
        except _images.ImageFileError as exc:
            print(f"fastmlp: error: {path}: {exc}", file=sys.stderr)
            failed += 1
    if args.json:
        print(json.dumps(entries, indent=2))
    else:
        width = max((len(_where(e)) for e in entries), default=0)
        for e in entries:
            print(f"{_where(e):<{width}}  " + ", ".join(
                f"{p['label']} {p['probability']:.4f}" for p in e["predictions"]))
    return 1 if failed else 0


def _predict_file(model, path, geometry, top, meta):
    """The prediction entries of the images in one file; ImageFileError when it fails."""
    from . import _images

    images, stacked, notes = _images.read_images(path, geometry)
    notes.append(_images.pixel_range_note(model, images))
    for note in filter(None, notes):
        _note(f"{path}: {note}")
    try:
        proba = model.predict_proba(images.reshape(len(images), -1))
    except ValueError as exc:  # the first line: scikit-learn's messages go on at length
        raise _images.ImageFileError(str(exc).splitlines()[0]) from None
    classes = model.classes_
    names = _class_names(classes, meta.get("target_names"))
    entries = []
    for i, p in enumerate(proba):
        best = np.argsort(-p, kind="stable")[:top]
        entries.append({"file": path, "index": i if stacked else None, "predictions": [
            {"label": names[j], "class": classes[j].item(), "probability": float(p[j])}
            for j in best]})
    return entries


def _class_names(classes, target_names):
    """A name per class: the data set's class names when the classes index them."""
    if (target_names and classes.dtype.kind in "iu" and classes.min() >= 0
            and classes.max() < len(target_names)):
        return [str(target_names[c]) for c in classes]
    return [str(c) for c in classes]


def _where(entry):
    return entry["file"] + ("" if entry["index"] is None else f"[{entry['index']}]")


def _cmd_summary(args):
    from .estimator import MLPImageClassifier

    activation = _ACTIVATIONS[args.activation]
    clf = MLPImageClassifier(hidden_layer_sizes=args.hidden, activation=activation)
    print(_architecture(args.input, args.hidden, activation, args.classes))
    print(clf.summary(args.input, args.classes))
    return 0


def _bench_script():
    """bench/bench_training.py of the source checkout this module runs from, or None.

    Only the checkout that holds this very file counts (an in-tree or editable install,
    where this file is <checkout>/python/fastmlp/cli.py): never one found from the current
    directory, whose bench/ could hold any code at all.
    """
    package = Path(__file__).resolve().parent
    if package.parent.name != "python":
        return None  # installed from a wheel: no checkout around it
    root = package.parent.parent
    script = root / "bench" / "bench_training.py"
    if not ((root / "pyproject.toml").is_file() and script.is_file()):
        return None
    return script


def _cmd_bench(argv):
    import runpy

    script = _bench_script()
    if script is None:
        raise CommandError(
            "the training benchmark is not installed with the package: `fastmlp bench` runs "
            "bench/bench_training.py of the source checkout fastmlp was installed from "
            "(pip install -e . in a checkout), and this fastmlp was not; in a checkout, run "
            "python bench/bench_training.py")
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(script), *argv]
    sys.path.insert(0, str(script.parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0
