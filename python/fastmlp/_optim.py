"""The optimizers on the Python side: per solver, its core configuration, its state and
its learning-rate schedule.

The compiled core owns the step rule and says which state slots each solver reads and
writes (``_core.OptimConfig.slots()``); this module allocates those slots, keeps the
step counter and the current learning rate, and applies the schedules between epochs,
with the hooks of scikit-learn's MLP optimizers: ``iteration_ends`` after every epoch and
``trigger_stopping`` when an epoch did not improve. A new optimizer is a class here (and
its step rule in ``csrc/kernels/optim.*``); the estimator only names it in its
parameter table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _core
from ._memory import cache_aligned

__all__ = ["OPTIMIZERS", "OptimizerState", "make_optimizer"]


# The learning rate of a schedule whose value underflows float64 (invscaling with a large
# power_t): the smallest positive double, since the core takes only positive rates; it is
# 0 in float32, where the steps compute, as the exact value would be.
_UNDERFLOWED_RATE = 5e-324


def _no_steps():
    return np.zeros(1, dtype=np.int64)


@dataclass
class OptimizerState:
    """What an optimizer carries from one call of ``fit`` to the next (pickled with the
    estimator): the solver's name, the current learning rate, per state slot (e.g.
    "velocity") one float32 array per weight and per bias, and the step count. The core
    advances ``steps`` in place together with the weights it updates."""

    solver: str
    learning_rate: float = 0.0
    slots: dict = field(default_factory=dict)  # name -> (coefs-shaped, intercepts-shaped)
    steps: np.ndarray = field(default_factory=_no_steps)  # (1,) int64
    schedule_t0: int = 0  # the step count when the per-step schedule (re)started

    @property
    def t(self):
        """Optimizer steps taken (batches trained)."""
        return int(self.steps[0])

    def copy(self):
        """A deep copy of the arrays, so a failed fit leaves the original as it was."""
        slots = {name: ([cache_aligned(a) for a in w], [cache_aligned(a) for a in b])
                 for name, (w, b) in self.slots.items()}
        return OptimizerState(self.solver, self.learning_rate, slots, self.steps.copy(),
                              self.schedule_t0)


class _Optimizer:
    """Shared by the solvers: the estimator's hyperparameters as a core config."""

    name = ""
    solver: _core.Solver | None = None

    def __init__(self, est):
        self.learning_rate_init = float(est.learning_rate_init)
        self.alpha = float(est.alpha)
        self.weight_decay = float(est.weight_decay)
        self.schedule = est.learning_rate
        self.warmup_epochs = float(est.warmup_epochs)
        self.max_iter = int(est.max_iter)
        self.steps_per_epoch = 1

    def begin_fit(self, state, steps_per_epoch, restart):
        """Before training: the per-step schedule spans this fit's steps; it restarts
        with every fit and with a first partial_fit, and runs on over later ones."""
        self.steps_per_epoch = steps_per_epoch
        if restart:
            state.schedule_t0 = state.t

    def config(self, state):
        """The core's OptimConfig for the next chunk of batches."""
        c = _core.OptimConfig()
        c.solver = self.solver
        c.learning_rate = state.learning_rate
        c.alpha = self.alpha
        c.weight_decay = self.weight_decay
        if self.schedule == "cosine":
            c.schedule = _core.LrSchedule.cosine
            c.warmup_steps = self.warmup_epochs * self.steps_per_epoch
            c.total_steps = max(float(self.max_iter * self.steps_per_epoch), c.warmup_steps)
            c.schedule_t0 = state.schedule_t0
        self._set_config(c)
        return c

    def current_rate(self, state):
        """The learning rate of the last step taken (of the next one before any)."""
        return _core.scheduled_learning_rate(self.config(state),
                                             max(state.t, state.schedule_t0 + 1))

    def _set_config(self, c):
        raise NotImplementedError

    def slots(self):
        return self.config(OptimizerState(self.name, self.learning_rate_init)).slots()

    def new_state(self, coefs, intercepts):
        def zeros(arrays):
            return [cache_aligned(np.zeros_like(a)) for a in arrays]

        slots = {name: (zeros(coefs), zeros(intercepts)) for name in self.slots()}
        return OptimizerState(self.name, self.learning_rate_init, slots)

    def fits(self, state):
        """Whether kept state belongs to this solver with these settings."""
        return (isinstance(state, OptimizerState) and state.solver == self.name
                and set(state.slots) == set(self.slots()))

    def iteration_ends(self, state, samples_seen):
        """After every epoch: a schedule may change ``state.learning_rate``."""

    def trigger_stopping(self, state, verbose):
        """An epoch did not improve for too long: True to stop, False when the optimizer
        handled it (the adaptive schedule lowers the learning rate instead)."""
        return True


class SGDOptimizer(_Optimizer):
    """Mini-batch SGD with (Nesterov) momentum and the schedules "constant",
    "invscaling" and "adaptive"."""

    name = "sgd"
    solver = _core.Solver.sgd

    def __init__(self, est):
        super().__init__(est)
        self.momentum = float(est.momentum)
        self.nesterov = bool(est.nesterovs_momentum)
        self.power_t = float(est.power_t)

    def _set_config(self, c):
        c.momentum = self.momentum
        c.nesterov = self.nesterov

    def iteration_ends(self, state, samples_seen):
        if self.schedule == "invscaling":
            try:
                state.learning_rate = (self.learning_rate_init
                                       / (samples_seen + 1) ** self.power_t)
            except OverflowError:  # the divisor is beyond float64: the rate underflows
                state.learning_rate = _UNDERFLOWED_RATE

    def trigger_stopping(self, state, verbose):
        if self.schedule != "adaptive" or state.learning_rate <= 1e-6:
            return True
        state.learning_rate /= 5.0
        if verbose:
            print(f"Setting learning rate to {state.learning_rate:f}")
        return False


class AdamOptimizer(_Optimizer):
    """Adam (Kingma & Ba), AdamW with ``weight_decay``; constant or "cosine" schedule."""

    name = "adam"
    solver = _core.Solver.adam

    def __init__(self, est):
        super().__init__(est)
        self.beta_1, self.beta_2 = float(est.beta_1), float(est.beta_2)
        self.epsilon = float(est.epsilon)

    def _set_config(self, c):
        c.beta_1, c.beta_2, c.epsilon = self.beta_1, self.beta_2, self.epsilon


OPTIMIZERS = {cls.name: cls for cls in (SGDOptimizer, AdamOptimizer)}


def make_optimizer(est):
    """The optimizer the estimator's ``solver`` names, with its hyperparameters."""
    return OPTIMIZERS[est.solver](est)
