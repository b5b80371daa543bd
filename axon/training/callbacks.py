"""Callbacks: small objects the loop calls at its events (the end of every epoch, above all).

A callback looks at the ``TrainState`` (its ``history`` above all) and may return a changed one:
early stopping sets ``stop_training`` (and puts the best params back), ``reduce_lr_on_plateau``
lowers ``lr_scale``, ``checkpoint`` saves the state to disk. Whatever a callback must remember between
epochs (the best value so far, a patience counter) it keeps in ``state.callbacks[its name]``, so it is
saved with checkpoints and a resumed run makes the same decisions as an uninterrupted one.

The loop fires Elixir Axon's events (``Axon.Loop``), in this order:

    started
    for each epoch:   epoch_started
                      for each batch:   iteration_started, (the step), iteration_completed
                      epoch_halted      (only when a handler halted the epoch)
                      epoch_completed
    halted or completed

A callback has one method per event, ``event(state, metrics)``, called with the state and the
metrics of the moment (the epoch's running averages at iteration events, the epoch's results at
``epoch_completed``); ``handle_event(event, fn, every=N)`` attaches any function to any event. A
method may return a new ``TrainState``, None (unchanged), or Axon's ``(status, state)`` with status
``"continue"``, ``"halt_epoch"`` (end the epoch's batches now; it still completes, with the batches
it ran) or ``"halt_loop"`` (stop training; the same as ``state._replace(stop_training=True)``).

The older hooks are these events under other names: ``on_train_begin(state)`` is ``started``,
``on_epoch_end(state)`` is ``epoch_completed``; then ``after_epoch(state)`` of every callback sees the
epoch's final state (read-only: for saving), and ``on_train_end(state)`` runs once at the very end
(also after Ctrl-C). A plain function ``fn(state)`` in ``callbacks=[...]`` is an ``on_epoch_end`` hook.

>>> import numpy as np
>>> from axon.training.steps import TrainState
>>> state = TrainState(params={}, opt_state=(), epoch=3, step=30, history={"val_loss": [0.5, 0.4, 0.45]},
...                    seed=0, lr_scale=1.0, callbacks={})
>>> stopper = early_stopping(monitor="val_loss", patience=1)
>>> stopper.on_epoch_end(state).callbacks["early_stopping"]["best"]
0.45
"""
from __future__ import annotations

import csv
import inspect
import io
import os
import sys

import numpy as np

from .. import serialization
from ..tree import tree_map
from .steps import TrainState

__all__ = ["EVENTS", "Callback", "EventHandler", "handle_event", "event_count", "EarlyStopping", "Checkpoint",
           "ReduceLROnPlateau", "CSVLogger", "FunctionCallback", "early_stopping", "checkpoint", "reduce_lr_on_plateau", "csv_logger", "on_epoch_end",
           "as_callback", "load_checkpoint"]

# Axon.Loop's events, in the order a run fires them.
EVENTS = ("started", "epoch_started", "iteration_started", "iteration_completed", "epoch_completed",
          "epoch_halted", "halted", "completed")

# Metrics that are better when larger: mode="auto" maximises a monitor whose name contains one of these.
_HIGHER_IS_BETTER = ("acc", "precision", "recall", "f1", "auc", "specificity", "sensitivity", "true_")


class Callback:
    """Base class: override the hooks you need; a hook returns a new ``TrainState`` or None (unchanged).

    ``name`` keys the callback's saved state in ``state.callbacks``; give two callbacks of one kind
    different names. ``stateful`` callbacks must have unique names.

    >>> import numpy as np, axon
    >>> objective = lambda p, x, y: ((x @ p["w"] - y) ** 2).mean()   # no bias: the loss stalls near 0.84
    >>> s = axon.training.step(({"w": np.zeros(2)}, objective), axon.optimizers.sgd(0.1))
    >>> x, y = np.random.default_rng(0).standard_normal((16, 2)), np.ones(16)
    >>> class BestLoss(Callback):                              # remembers the lowest loss so far
    ...     name, stateful = "best_loss", True
    ...     def on_epoch_end(self, state):
    ...         return self.remember(state, {"best": round(min(state.history["loss"]), 4)})
    >>> axon.training.train(s, x, y, epochs=3, batch_size=4, verbose=0, callbacks=[BestLoss()]).callbacks
    {'best_loss': {'best': 0.8585}}
    """
    name = "callback"
    stateful = False

    def handle(self, event: str, state: TrainState, metrics: dict):
        """Called by the loop at every event: the method of that name."""
        return getattr(self, event)(state, metrics)

    # Axon.Loop's events; ``started`` and ``epoch_completed`` call the older hooks
    def started(self, state, metrics):
        return self.on_train_begin(state)

    def epoch_started(self, state, metrics):
        return None

    def iteration_started(self, state, metrics):
        return None

    def iteration_completed(self, state, metrics):
        return None

    def epoch_halted(self, state, metrics):
        return None

    def epoch_completed(self, state, metrics):
        return self.on_epoch_end(state)

    def halted(self, state, metrics):
        return None

    def completed(self, state, metrics):
        return None

    def on_train_begin(self, state: TrainState):
        return None

    def on_epoch_end(self, state: TrainState):
        return None

    def after_epoch(self, state: TrainState) -> None:
        return None

    def on_train_end(self, state: TrainState):
        return None

    # the callback's own entry in state.callbacks
    def memory(self, state: TrainState, default: dict) -> dict:
        """This callback's saved state (a dict), or ``default`` before its first epoch."""
        return dict(state.callbacks.get(self.name, default))

    def remember(self, state: TrainState, value: dict) -> TrainState:
        """A state whose ``callbacks[self.name]`` is ``value``."""
        return state._replace(callbacks={**state.callbacks, self.name: value})


def _check_mode(who: str, mode: str) -> None:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")


class _Monitor:
    """Which history entry to watch, and whether lower or higher is better."""

    def __init__(self, who: str, monitor: str, mode: str, min_delta: float):
        _check_mode(who, mode)
        if min_delta < 0:
            raise ValueError(f"{who}: min_delta must be >= 0, got {min_delta}")
        if mode == "auto":
            mode = "max" if any(h in monitor for h in _HIGHER_IS_BETTER) else "min"
        self.who, self.monitor, self.mode, self.min_delta = who, monitor, mode, float(min_delta)

    def latest(self, state: TrainState) -> float:
        values = state.history.get(self.monitor)
        if not values:
            hint = " (val_* metrics need validation_data=)" if self.monitor.startswith("val_") else ""
            raise ValueError(f"{self.who}: monitor {self.monitor!r} is not in the history{hint}; "
                             f"available: {sorted(state.history)}")
        return float(values[-1])

    def improved(self, value: float, best) -> bool:
        """Better than ``best`` by more than ``min_delta`` (NaN never is)."""
        if best is None:
            return not np.isnan(value)
        return value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs; optionally restore the best params.

    ``min_delta``: the smallest change that counts as an improvement. ``mode``: "min", "max", or "auto"
    (max for accuracy-like names, min otherwise). ``restore_best``: when stopping, put back the params
    of the best epoch (they are kept, copied, in the state, so this survives a checkpoint/resume).

    >>> import numpy as np, axon
    >>> objective = lambda p, x, y: ((x @ p["w"] - y) ** 2).mean()   # no bias: the loss stalls near 0.84
    >>> s = axon.training.step(({"w": np.zeros(2)}, objective), axon.optimizers.sgd(0.1))
    >>> x, y = np.random.default_rng(0).standard_normal((16, 2)), np.ones(16)
    >>> stop = early_stopping(monitor="loss", patience=2, min_delta=1e-3)
    >>> state = axon.training.train(s, x, y, epochs=50, batch_size=4, verbose=0, callbacks=[stop])
    >>> state.epoch, state.callbacks["early_stopping"]["best_epoch"]   # stopped 2 epochs after the best
    (7, 5)
    """
    stateful = True

    def __init__(self, monitor: str = "val_loss", patience: int = 3, min_delta: float = 0.0, mode: str = "auto",
                 restore_best: bool = True, name: str = "early_stopping"):
        if not isinstance(patience, (int, np.integer)) or patience < 1:
            raise ValueError(f"early_stopping: patience must be a positive int, got {patience!r}")
        self.watch = _Monitor("early_stopping", monitor, mode, min_delta)
        self.patience, self.restore_best, self.name = int(patience), bool(restore_best), name

    def on_epoch_end(self, state):
        value = self.watch.latest(state)
        mem = self.memory(state, {"best": None, "best_epoch": 0, "wait": 0, "best_params": None})
        if self.watch.improved(value, mem["best"]):
            mem.update(best=value, best_epoch=state.epoch, wait=0,
                       best_params=tree_map(np.copy, state.params) if self.restore_best else None)
        else:
            mem["wait"] += 1
        state = self.remember(state, mem)
        if mem["wait"] >= self.patience:
            if self.restore_best and mem["best_params"] is not None:
                state = state._replace(params=tree_map(np.copy, mem["best_params"]))
            print(f"early_stopping: {self.watch.monitor} has not improved for {self.patience} epochs "
                  f"(best {mem['best']:.4f} at epoch {mem['best_epoch']})"
                  f"{'; restoring its params' if self.restore_best else ''}", file=sys.stderr)
            state = state._replace(stop_training=True)
        return state


class Checkpoint(Callback):
    """Save the ``TrainState`` to ``path`` every ``every`` epochs, atomically; keep the best one too.

    With ``keep_best``, the state of the best epoch so far (by ``monitor``: "val_loss" when there is
    validation data, else "loss", unless given) is also saved to ``best_path`` (default: ``path`` with
    ``.best`` before its suffix, ``ckpt.safetensors -> ckpt.best.safetensors``). A run interrupted by
    Ctrl-C is saved to ``path`` as well, mid-epoch. Resume with ``train(..., state=load_checkpoint(path))``:
    it goes on exactly where the saved state stopped. The file is ``axon.save``'s (safetensors, the
    whole ``TrainState``: params, optimizer state, history, callback memory); the paths are checked here,
    before any training.

    >>> import numpy as np, axon
    >>> objective = lambda p, x, y: ((x @ p["w"] - y) ** 2).mean()   # no bias: the loss stalls near 0.84
    >>> s = axon.training.step(({"w": np.zeros(2)}, objective), axon.optimizers.sgd(0.1))
    >>> x, y = np.random.default_rng(0).standard_normal((16, 2)), np.ones(16)
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     save = checkpoint(f"{tmp}/ckpt.safetensors")         # every epoch, and the best one apart
    ...     state = axon.training.train(s, x, y, epochs=2, batch_size=4, verbose=0, callbacks=[save])
    ...     sorted(os.listdir(tmp)), load_checkpoint(f"{tmp}/ckpt.safetensors").epoch
    (['ckpt.best.safetensors', 'ckpt.safetensors'], 2)
    """
    stateful = True

    def __init__(self, path, every: int = 1, monitor: str | None = None, mode: str = "auto",
                 keep_best: bool = True, best_path=None, name: str = "checkpoint"):
        if not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"checkpoint: every must be a positive int, got {every!r}")
        _check_mode("checkpoint", mode)                        # now, not after the first epoch's training
        self.path = os.fspath(path)
        stem, suffix = os.path.splitext(self.path)
        self.best_path = os.fspath(best_path) if best_path is not None else f"{stem}.best{suffix or '.safetensors'}"
        self.every, self.keep_best, self.name = int(every), bool(keep_best), name
        self.monitor, self.mode, self._save_best = monitor, mode, False
        for p in (self.path, self.best_path) if keep_best else (self.path,):
            if os.path.isdir(p):
                raise ValueError(f"checkpoint: '{p}' is a directory; give a file path, such as "
                                 f"'{os.path.join(p, 'ckpt.safetensors')}'")
            if not os.path.isdir(os.path.dirname(os.path.abspath(p))):
                raise ValueError(f"checkpoint: the folder of '{p}' does not exist")

    def on_epoch_end(self, state):
        self._save_best = False
        if not self.keep_best:
            return None
        monitor = self.monitor or ("val_loss" if "val_loss" in state.history else "loss")
        watch = _Monitor("checkpoint", monitor, self.mode, 0.0)
        value = watch.latest(state)
        mem = self.memory(state, {"best": None, "best_epoch": 0})
        if watch.improved(value, mem["best"]):
            mem.update(best=value, best_epoch=state.epoch)
            self._save_best = True
        return self.remember(state, mem)

    def after_epoch(self, state) -> None:
        if state.epoch % self.every == 0 or state.stop_training:
            serialization.save(self.path, state)
        if self._save_best:
            serialization.save(self.best_path, state)
            self._save_best = False

    def on_train_end(self, state):
        if state.epoch_step:                                   # interrupted mid-epoch (Ctrl-C): keep that too
            serialization.save(self.path, state)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stalls for ``patience`` epochs.

    It lowers ``state.lr_scale``, which scales every update the optimizer makes: for optimizers whose
    last transformation is the learning rate (sgd, adam, adamw, ...), the same as scaling the rate.
    After a reduction, ``cooldown`` epochs pass before counting again; ``min_scale`` is the floor.

    >>> import numpy as np, axon
    >>> objective = lambda p, x, y: ((x @ p["w"] - y) ** 2).mean()   # no bias: the loss stalls near 0.84
    >>> s = axon.training.step(({"w": np.zeros(2)}, objective), axon.optimizers.sgd(0.1))
    >>> x, y = np.random.default_rng(0).standard_normal((16, 2)), np.ones(16)
    >>> lower = reduce_lr_on_plateau(monitor="loss", factor=0.5, patience=1, min_delta=1e-2)
    >>> axon.training.train(s, x, y, epochs=10, batch_size=4, verbose=0, callbacks=[lower]).lr_scale   # halved 4 times
    0.0625
    """
    stateful = True

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 5, min_delta: float = 1e-4,
                 cooldown: int = 0, min_scale: float = 0.0, mode: str = "auto", name: str = "reduce_lr_on_plateau"):
        if not 0.0 < factor < 1.0:
            raise ValueError(f"reduce_lr_on_plateau: factor must be in (0, 1), got {factor}")
        if not isinstance(patience, (int, np.integer)) or patience < 1:
            raise ValueError(f"reduce_lr_on_plateau: patience must be a positive int, got {patience!r}")
        self.watch = _Monitor("reduce_lr_on_plateau", monitor, mode, min_delta)
        self.factor, self.patience, self.cooldown = float(factor), int(patience), int(cooldown)
        self.min_scale, self.name = float(min_scale), name

    def on_epoch_end(self, state):
        value = self.watch.latest(state)
        mem = self.memory(state, {"best": None, "wait": 0, "cooldown": 0})
        in_cooldown = mem["cooldown"] > 0
        if in_cooldown:
            mem["cooldown"] -= 1
            mem["wait"] = 0
        if self.watch.improved(value, mem["best"]):
            mem.update(best=value, wait=0)
        elif not in_cooldown:
            mem["wait"] += 1
            if mem["wait"] >= self.patience:
                scale = max(state.lr_scale * self.factor, self.min_scale)
                if scale < state.lr_scale:
                    print(f"reduce_lr_on_plateau: {self.watch.monitor} stalled for {self.patience} epochs; "
                          f"learning rate x{scale:g}", file=sys.stderr)
                    state = state._replace(lr_scale=scale)
                mem.update(wait=0, cooldown=self.cooldown)
        return self.remember(state, mem)


class CSVLogger(Callback):
    """Write the history as a CSV table (one row per epoch) to ``path`` after every epoch.

    The whole table is rewritten each time (atomically) from ``state.history``, so a resumed run's
    file holds every epoch, old and new.

    >>> import numpy as np, axon
    >>> objective = lambda p, x, y: ((x @ p["w"] - y) ** 2).mean()   # no bias: the loss stalls near 0.84
    >>> s = axon.training.step(({"w": np.zeros(2)}, objective), axon.optimizers.sgd(0.1))
    >>> x, y = np.random.default_rng(0).standard_normal((16, 2)), np.ones(16)
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     log = csv_logger(f"{tmp}/log.csv")
    ...     state = axon.training.train(s, x, y, epochs=2, batch_size=4, verbose=0, callbacks=[log])
    ...     [line[:10] for line in open(f"{tmp}/log.csv").read().splitlines()]     # header, then one row per epoch
    ['epoch,loss', '1,0.991534', '2,0.882893']
    """

    def __init__(self, path, name: str = "csv_logger"):
        self.path, self.name = os.fspath(path), name

    def after_epoch(self, state) -> None:
        keys = list(state.history)
        rows = max((len(v) for v in state.history.values()), default=0)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["epoch", *keys])
        for i in range(rows):
            writer.writerow([i + 1, *(repr(float(state.history[k][i])) if i < len(state.history[k]) else ""
                                      for k in keys)])
        serialization.atomic_write(self.path, lambda f: f.write(buf.getvalue()), mode="w")


class FunctionCallback(Callback):
    """A plain function ``fn(state) -> TrainState | None`` called at the end of every epoch.

    >>> import numpy as np, axon
    >>> objective = lambda p, x, y: ((x @ p["w"] - y) ** 2).mean()   # no bias: the loss stalls near 0.84
    >>> s = axon.training.step(({"w": np.zeros(2)}, objective), axon.optimizers.sgd(0.1))
    >>> x, y = np.random.default_rng(0).standard_normal((16, 2)), np.ones(16)
    >>> seen = []
    >>> state = axon.training.train(s, x, y, epochs=3, batch_size=4, verbose=0,
    ...                             callbacks=[on_epoch_end(lambda state: seen.append(state.epoch))])
    >>> seen                                                   # append returns None: the state is unchanged
    [1, 2, 3]
    """

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"on_epoch_end: expects a function fn(state), got {type(fn).__name__}")
        self.fn, self.name = fn, getattr(fn, "__name__", "on_epoch_end")

    def on_epoch_end(self, state):
        return self.fn(state)


def event_count(event: str, state: TrainState) -> int:
    """Which firing of ``event`` this is in the whole run (1 for the first), read from the state.

    Iteration events count optimizer steps, epoch events epochs, so a resumed run counts on.

    >>> state = TrainState(params={}, opt_state=(), epoch=2, step=30, history={}, seed=0, lr_scale=1.0, callbacks={})
    >>> event_count("iteration_started", state), event_count("iteration_completed", state), event_count("epoch_started", state)
    (31, 30, 3)
    """
    if event == "iteration_started":                          # before step state.step + 1
        return state.step + 1
    if event == "iteration_completed":
        return state.step
    if event in ("epoch_started", "epoch_halted"):             # during epoch state.epoch + 1
        return state.epoch + 1
    if event == "epoch_completed":
        return state.epoch
    return 1                                                   # started, halted, completed: once a run


class EventHandler(Callback):
    """``fn(state)`` or ``fn(state, metrics)`` run at ``event``, at every ``every``-th firing of it.

    As Axon's ``Axon.Loop.handle_event(loop, event, fn, every: N)``: ``every`` counts the event's
    firings over the whole run (optimizer steps for iteration events, epochs for epoch events), so
    ``every=100`` on ``"iteration_completed"`` runs after steps 100, 200, ... ``fn`` returns what a
    callback returns (a state, None, or ``(status, state)``). ``filter``: a further condition
    ``filter(state) -> bool``.

    >>> import numpy as np, axon
    >>> objective = lambda p, x, y: ((x @ p["w"] - y) ** 2).mean()
    >>> s = axon.training.step(({"w": np.zeros(2)}, objective), axon.optimizers.sgd(0.1))
    >>> x, y = np.random.default_rng(0).standard_normal((16, 2)), np.ones(16)
    >>> seen = []
    >>> def log(state, metrics):                 # metrics: the epoch's running means so far
    ...     seen.append((state.step, round(metrics["loss"], 3)))
    >>> state = axon.training.train(s, x, y, epochs=2, batch_size=4, verbose=0,
    ...                             callbacks=[handle_event("iteration_completed", log, every=3)])
    >>> seen                                     # after steps 3 and 6 (batches 3 of epoch 1, 2 of epoch 2)
    [(3, 1.009), (6, 0.952)]
    """

    def __init__(self, event: str, fn, every: int = 1, filter=None, name: str | None = None):
        if event not in EVENTS:
            raise ValueError(f"handle_event: event must be one of {list(EVENTS)}, got {event!r}")
        if not callable(fn):
            raise TypeError(f"handle_event: fn must be a function fn(state) or fn(state, metrics), "
                            f"got {type(fn).__name__}")
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"handle_event: every must be a positive int, got {every!r}")
        if filter is not None and not callable(filter):
            raise TypeError(f"handle_event: filter must be a function filter(state) -> bool, got {type(filter).__name__}")
        self.event, self.fn, self.every, self.filter = event, fn, int(every), filter
        self.name = name if name is not None else getattr(fn, "__name__", event)
        self._with_metrics = _takes_two_arguments(fn)

    def handle(self, event, state, metrics):
        if event != self.event or event_count(event, state) % self.every:
            return None
        if self.filter is not None and not self.filter(state):
            return None
        return self.fn(state, metrics) if self._with_metrics else self.fn(state)


def _takes_two_arguments(fn) -> bool:
    """Whether ``fn`` can be called with two positional arguments (unknown signatures: one)."""
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        return False
    except ValueError:                                         # no signature (some builtins)
        return False
    return True


handle_event = EventHandler

# The names as in the issue (and Elixir Axon): lower-case constructors.
early_stopping = EarlyStopping
checkpoint = Checkpoint
reduce_lr_on_plateau = ReduceLROnPlateau
csv_logger = CSVLogger
on_epoch_end = FunctionCallback


def as_callback(c) -> Callback:
    """``c`` itself if it is a ``Callback``, else a plain function wrapped as an ``on_epoch_end`` hook.

    >>> stop = early_stopping()
    >>> as_callback(stop) is stop, type(as_callback(print)).__name__, as_callback(print).name
    (True, 'FunctionCallback', 'print')
    """
    if isinstance(c, Callback):
        return c
    if callable(c):
        return FunctionCallback(c)
    raise TypeError(f"train: each callback must be a Callback or a function fn(state), got {type(c).__name__}")


def load_checkpoint(path) -> TrainState:
    """The ``TrainState`` saved by ``checkpoint`` (or ``axon.save(path, state)``) at ``path``.

    A file that is not one raises ``axon.FormatError`` naming it.

    >>> import tempfile, axon
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     axon.save(f"{tmp}/ckpt.safetensors", TrainState({}, (), 2, 20, {"loss": [0.3, 0.2]}, 0, 1.0, {}))
    ...     load_checkpoint(f"{tmp}/ckpt.safetensors").history
    {'loss': [0.3, 0.2]}
    """
    state = serialization.load(path)
    if not isinstance(state, TrainState):
        raise serialization.FormatError(
            f"load_checkpoint: '{os.fspath(path)}' holds a {type(state).__name__}, not a TrainState "
            f"(was it written by axon.training.callbacks.checkpoint?)")
    return state
