"""The training loop: epochs of shuffled batches, a progress bar, validation, callbacks.

    fire("started")
    for epoch in range(state.epoch, epochs):
        fire("epoch_started")
        for x, y in batches(epoch):                 # a fresh shuffle per epoch, from (seed, epoch)
            fire("iteration_started")
            state, metrics = step_fn(state, x, y)   # one optimizer step
            fire("iteration_completed")             # with the epoch's running metrics
        history += mean of the batch metrics (+ validation metrics)
        fire("epoch_completed")                     # early stopping, checkpoints, lr on plateau, ...
    fire("halted" if a handler stopped the run else "completed")

The events are Elixir Axon's (``Axon.Loop``); callbacks (``axon.training.callbacks``) handle them.

Everything a run depends on is in the ``TrainState`` (params, optimizer state, step, seed, the
callbacks' own small state) or derived from it (the shuffle order and the augmentation stream of
epoch e come from ``(seed, e)``, the dropout masks of step s from ``(seed, s)``), so a run resumed from
a checkpoint continues exactly as the uninterrupted run would have.

>>> import numpy as np, axon
>>> x = np.random.default_rng(0).standard_normal((256, 4)).astype(np.float32)
>>> y = np.eye(2, dtype=np.float32)[(x[:, 0] > 0).astype(int)]     # the class is the sign of feature 0
>>> model = axon.input((None, 4)).dense(2, activation="softmax")
>>> s = axon.training.step(model, "categorical_cross_entropy", axon.optimizers.adam(0.05), metrics=["accuracy"])
>>> state = train(s, x, y, epochs=5, batch_size=32, verbose=0)
>>> state.epoch, state.step, state.history["accuracy"][-1] > 0.9
(5, 40, True)
"""
from __future__ import annotations

import itertools
import math
import sys
import time
import warnings

import numpy as np

from ..backend import backend, resolve_device, to_device
from ..distributed import get_strategy
from ..random import rng
from ..tree import tree_leaves, tree_map, tree_structure_check
from .callbacks import as_callback
from .steps import Step, TrainState

__all__ = ["train"]


def _num_examples(tree, what: str) -> int:
    """The shared length of the first axis of every array in ``tree``; ValueError if they differ."""
    leaves = tree_leaves(tree)
    if not leaves:
        raise ValueError(f"train: {what} holds no arrays")
    if not all(isinstance(a, np.ndarray) for a in leaves):
        kind = type(next(a for a in leaves if not isinstance(a, np.ndarray))).__name__
        raise TypeError(f"train: {what} must be numpy arrays with one example per row (or a dict of them), "
                        f"got a {type(tree).__name__} holding {kind}s; convert with np.asarray(..., np.float32)")
    lengths = {np.shape(a)[0] if np.ndim(a) else None for a in leaves}
    if len(lengths) != 1 or None in lengths:
        shapes = [np.shape(a) for a in leaves]
        raise ValueError(f"train: every array in {what} needs the same number of examples (first axis), "
                         f"got shapes {shapes}")
    return lengths.pop()


def _take(tree, rows):
    """The given rows of an array, or of every array in a tree (a dict of model inputs, say).

    ``np.take`` copies the rows of a big array about a third faster than ``a[rows]``.
    """
    if isinstance(tree, np.ndarray):
        return np.take(tree, rows, axis=0)
    return tree_map(lambda a: np.take(a, rows, axis=0), tree)


class _ArrayData:
    """Batches of ``(x, y)`` arrays, shuffled per epoch from ``(seed, epoch)``."""

    def __init__(self, x, y, batch_size: int, shuffle: bool, steps_per_epoch=None):
        n_x, n_y = _num_examples(x, "inputs"), _num_examples(y, "targets")
        if n_x != n_y:
            raise ValueError(f"train: inputs have {n_x} examples but targets have {n_y}")
        if n_x == 0:
            raise ValueError("train: no training examples (the inputs are empty)")
        self.x, self.y, self.n, self.batch_size, self.shuffle = x, y, n_x, batch_size, shuffle
        self.steps = -(-n_x // batch_size)                     # ceil: the last batch may be smaller
        if steps_per_epoch is not None:
            if steps_per_epoch > self.steps:
                raise ValueError(f"train: steps_per_epoch={steps_per_epoch} but {n_x} examples in batches of "
                                 f"{batch_size} make only {self.steps} steps")
            self.steps = steps_per_epoch                       # the first batches of each epoch's shuffle
        self.replayable = True                                 # an epoch's batches can be drawn again

    def batches(self, seed: int, epoch: int, done: int = 0):   # ``done`` matters to one-shot iterables only
        order = rng(seed, "shuffle", epoch).permutation(self.n) if self.shuffle else None
        for lo in range(0, self.steps * self.batch_size, self.batch_size):
            if self.shuffle:
                rows = order[lo:lo + self.batch_size]                 # (batch,) example indices
                yield _take(self.x, rows), _take(self.y, rows)
            else:                                                  # consecutive rows: views, no copy
                yield tree_map(lambda a: a[lo:lo + self.batch_size], self.x), \
                    tree_map(lambda a: a[lo:lo + self.batch_size], self.y)


class _IterableData:
    """Batches from any iterable of ``(x, y)`` pairs (a list, a generator, a data loader)."""

    def __init__(self, batches, steps_per_epoch, epochs_left: int):
        one_shot = iter(batches) is batches
        if one_shot and epochs_left > 1 and steps_per_epoch is None:
            raise ValueError("train: the batches come from a one-shot iterator (a generator), which would run "
                             "dry after the first epoch; pass steps_per_epoch=, or a list / re-iterable object")
        self.source, self.one_shot = batches, one_shot
        self.steps = steps_per_epoch if steps_per_epoch is not None else (
            len(batches) if hasattr(batches, "__len__") else None)
        self.limit = steps_per_epoch
        self.replayable = not one_shot                         # a generator resumes where it stopped by itself

    def batches(self, seed: int, epoch: int, done: int = 0):
        it = self.source if self.one_shot else iter(self.source)
        limit = self.limit - done if self.one_shot and self.limit is not None else self.limit
        for batch in itertools.islice(it, limit):              # limit None: the whole iterable
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise ValueError(f"train: each batch must be a pair (x, y), got {type(batch).__name__}"
                                 f"{' of length ' + str(len(batch)) if isinstance(batch, (tuple, list)) else ''}")
            yield batch


def _prepared(batches, strategy, augment, augment_rng, skip: int):
    """The epoch's ``(x, y, n)``: this process's rows, augmented, less the first ``skip`` (trained before a resume)."""
    for i, (x, y) in enumerate(batches):
        x, y = strategy.shard(x, y)                            # data parallel: this process's rows of the batch
        if augment is not None:
            x = augment(x, augment_rng)                        # skipped batches too: the same random stream
        if i < skip:
            continue
        yield x, y, len(x) if isinstance(x, np.ndarray) else _num_examples(x, "a batch's inputs")


def _copied_ahead(batches, copy_ahead):
    """The ``(x, y, n)`` batches on the device, each one's copy started before the batch in front of it is trained.

    One batch of lookahead with the backend's ``copy_ahead`` (an asynchronous host-to-device copy):
    batch i + 1 travels while the step of batch i runs, and ``wait()`` hands it over when its turn
    comes. Only replayable data is read ahead (from a one-shot generator, a halt would lose that batch).
    """
    pending = None
    for x, y, n in batches:
        ahead = copy_ahead((x, y)), n                          # starts now; batch i is trained below
        if pending is not None:
            yield (*pending[0](), pending[1])
        pending = ahead
    if pending is not None:
        yield (*pending[0](), pending[1])


class _NonFiniteLoss(Exception):
    """Raised inside the loop when a step's loss is NaN or inf (``terminate_on_nan``)."""

    def __init__(self, loss, epoch, batch):
        super().__init__(loss)
        self.loss, self.epoch, self.batch = loss, epoch, batch


def _fmt(metrics: dict) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in metrics.items())


class _Progress:
    """A tqdm bar for one epoch, refreshed at most four times a second (``verbose=1``)."""
    interval = 0.25

    def __init__(self, verbose: int, total, desc: str, initial: int = 0):
        self.bar = None
        if verbose == 1:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="step", leave=True, dynamic_ncols=True,
                            mininterval=self.interval, file=sys.stderr, initial=initial)
        self.pending, self.last = 0, time.monotonic()

    def step(self, sums: dict, count: int) -> None:
        self.pending += 1
        if self.bar is None:
            return
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.bar.set_postfix_str(_fmt({k: v / count for k, v in sums.items()}), refresh=False)
            self.bar.update(self.pending)
            self.pending, self.last = 0, now

    def close(self, metrics: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(_fmt(metrics), refresh=False)
            self.bar.update(self.pending)
            self.bar.close()


_STATUSES = ("continue", "halt_epoch", "halt_loop")


def _returned(cb, hook: str, new, state: TrainState) -> tuple[TrainState, str]:
    """The state and status a callback returned: a state, None (unchanged) or ``(status, state)``."""
    status = "continue"
    if isinstance(new, tuple) and not isinstance(new, TrainState) and len(new) == 2 and new[0] in _STATUSES:
        status, new = new
    if new is None:
        return state, status
    if not isinstance(new, TrainState):
        raise TypeError(f"train: callback {cb.name!r} returned a {type(new).__name__} from {hook}; "
                        f"return the TrainState, None to leave it unchanged, or (status, state) with status "
                        f"one of {list(_STATUSES)}")
    return new, status


def _fire(callbacks, event: str, state: TrainState, metrics: dict) -> tuple[TrainState, bool]:
    """Run every callback's handler of ``event`` in order; return the state and whether to halt the epoch.

    Every handler runs, even after one asked to halt; ``"halt_loop"`` sets ``stop_training``.
    """
    halt_epoch = False
    for cb in callbacks:
        state, status = _returned(cb, event, cb.handle(event, state, metrics), state)
        if status == "halt_loop":
            state = state._replace(stop_training=True)
        halt_epoch |= status == "halt_epoch"
    return state, halt_epoch


def _run_hooks(callbacks, hook: str, state: TrainState) -> TrainState:
    """Call ``hook`` on every callback in order; a callback may return a new state (None keeps it)."""
    for cb in callbacks:
        state, _ = _returned(cb, hook, getattr(cb, hook)(state), state)
    return state


def _means(sums: dict, count: int) -> dict:
    """The running averages of the epoch so far (per example)."""
    return {k: v / count for k, v in sums.items()} if count else {}


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"train: {name} must be a positive int, got {value!r}")
    return int(value)


def _checked_callbacks(callbacks) -> list:
    """Callback objects (plain functions wrapped); stateful ones must have distinct names."""
    callbacks = [as_callback(c) for c in callbacks]
    names = [c.name for c in callbacks if c.stateful]
    if len(set(names)) != len(names):
        raise ValueError(f"train: callback names must be unique (they key their saved state), got {names}; "
                         f"pass name= to tell them apart")
    return callbacks


def _check_validation_data(validation_data) -> None:
    if validation_data is None:
        return
    if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
        raise ValueError("train: validation_data must be a pair (x_val, y_val)")
    n_x = _num_examples(validation_data[0], "validation inputs")
    n_y = _num_examples(validation_data[1], "validation targets")
    if n_x != n_y:
        raise ValueError(f"train: validation inputs have {n_x} examples but validation targets have {n_y}")
    if n_x == 0:
        raise ValueError("train: validation_data holds no examples")


def _check_resumed(step_fn, state: TrainState) -> None:
    """Raise ValueError, before any training, when the state to resume does not fit the step's model and optimizer."""
    trainable = state.params
    split = getattr(step_fn, "_split", None)                   # the model form: the params must fit the model
    try:
        if split is not None:
            trainable = split(state.params)[0]
    except (ValueError, TypeError) as e:
        raise ValueError(f"train: the state to resume does not fit this step: {e}") from None
    try:
        tree_structure_check(step_fn.optimizer.init(trainable), state.opt_state,
                             names=("the optimizer's state for these params", "the state's opt_state"))
    except (ValueError, TypeError) as e:
        raise ValueError(f"train: the state to resume does not fit this step: its opt_state is not this "
                         f"optimizer's state for its params ({e})") from None


def train(step: Step, inputs, targets=None, *, epochs: int = 1, batch_size: int = 32, shuffle: bool = True,
          seed=None, validation_data=None, callbacks=(), verbose: int = 1, state: TrainState | None = None,
          steps_per_epoch: int | None = None, validation_batch_size: int = 1000, augment=None,
          device=None, strategy=None, terminate_on_nan: bool = True) -> TrainState:
    """Train until ``epochs`` epochs are done; return the final ``TrainState``.

    - ``step``: from ``axon.training.step(...)``.
    - ``inputs, targets``: arrays with one example per row (or dicts of them, for several model
      inputs), cut into batches of ``batch_size`` (the last one may be smaller), shuffled every epoch
      when ``shuffle``; or ``inputs`` alone, an iterable of ``(x, y)`` batches (a list, a generator with
      ``steps_per_epoch``, a data loader). ``steps_per_epoch`` limits every epoch to that many batches
      (with arrays: the first ones of the epoch's shuffle).
    - ``seed``: seeds the params (through ``init``), the shuffles and the dropout masks. Defaults to 0;
      when resuming, the state's own seed is used (passing a different one is an error).
    - ``validation_data=(x_val, y_val)``: evaluated after every epoch (inference mode) into
      ``val_loss`` and ``val_<metric>``.
    - ``callbacks``: ``axon.training.callbacks`` objects, or plain functions ``fn(state)`` called at
      every epoch's end (return a new state, or None). ``handle_event(event, fn, every=N)`` runs a
      function at any of Axon's events (``started``, ``epoch_started``, ``iteration_started``,
      ``iteration_completed``, ``epoch_completed``, ``epoch_halted``, ``halted``, ``completed``); a
      handler may halt the epoch or the run (see ``axon.training.callbacks``). A run halted mid-epoch
      returns a state that resumes like one interrupted by Ctrl-C.
    - ``verbose``: 1 a progress bar per epoch (loss and metrics, refreshed a few times a second),
      2 one line per epoch, 0 silent.
    - ``state``: a ``TrainState`` to continue from (e.g. ``load_checkpoint(path)``): training resumes
      at ``state.epoch`` and stops at ``epochs`` in total.
    - ``device``: where params, optimizer state and every batch live during the run (``"cpu"``,
      ``"cuda"``); the default leaves the params where ``init`` or the resumed state put them. On a
      device whose backend can copy asynchronously (``"cuda"``), the next batch's copy is started
      before each step, so it overlaps the step (arrays and re-iterable batches; not a generator).
    - ``augment``: a function ``augment(x, rng) -> x`` applied to every training batch (never to the
      validation data), e.g. random shifts of images; ``rng`` is a numpy Generator seeded from
      ``(seed, epoch)``, so augmented runs are reproducible and resume exactly.
    - ``strategy``: None (one process) or ``"data_parallel"`` (``axon.distributed.DataParallel``): started
      by ``mpiexec -n N``, each process trains on ``1/N`` of every batch of ``batch_size`` rows and the
      gradients are averaged, so the run matches the one-process run with the same ``batch_size``;
      only process 0 prints and writes checkpoints.
    - ``terminate_on_nan``: a step whose loss is NaN or infinite stops training (as Keras'
      ``TerminateOnNaN``) with a ``RuntimeWarning``, returning the state from before that step (its params
      are still finite); False trains on regardless.

    ``state.history`` holds one value per epoch for each metric: the average over the epoch's batches
    (weighted by batch size) of the values measured during training, then the validation ones.
    Ctrl-C (``KeyboardInterrupt``) stops training and returns the state reached after the last
    completed step, with ``epoch_step`` batches of the unfinished epoch done. Passed back as ``state=``,
    it continues with the next batch of that epoch (the same shuffle, augmentation and dropout keys), so
    with arrays or a re-iterable list of batches the params end exactly as in an uninterrupted run
    (a generator goes on from where it stopped, less the batch the interruption dropped). That
    epoch's training metrics then average the batches after the resume only (NaN if there were none).

    >>> import numpy as np, axon
    >>> x = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)
    >>> y = np.eye(2, dtype=np.float32)[(x[:, 0] > 0).astype(int)]     # two classes: the sign of feature 0
    >>> s = axon.training.step(axon.input((None, 3)).dense(2, activation="softmax"), "categorical_cross_entropy",
    ...                        axon.optimizers.adam(0.1), metrics=["accuracy"])
    >>> state = train(s, x[:48], y[:48], epochs=2, batch_size=16, seed=0, verbose=0, validation_data=(x[48:], y[48:]))
    >>> sorted(state.history), state.epoch, state.step                # 48 / 16 = 3 steps per epoch
    (['accuracy', 'loss', 'val_accuracy', 'val_loss'], 2, 6)
    """
    if not (isinstance(step, tuple) and len(step) == 2 and callable(step[0]) and callable(step[1])):
        raise TypeError(f"train: step must be the pair returned by axon.training.step(...), got {type(step).__name__}")
    init_fn, step_fn = step
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"train: epochs must be a non-negative int, got {epochs!r}")
    batch_size = _check_positive_int("batch_size", batch_size)
    validation_batch_size = _check_positive_int("validation_batch_size", validation_batch_size)
    if steps_per_epoch is not None:
        steps_per_epoch = _check_positive_int("steps_per_epoch", steps_per_epoch)
    if verbose not in (0, 1, 2):
        raise ValueError(f"train: verbose must be 0, 1 or 2, got {verbose!r}")
    if augment is not None and not callable(augment):
        raise TypeError(f"train: augment must be a function augment(x, rng) -> x, got {type(augment).__name__}")
    callbacks = _checked_callbacks(callbacks)
    _check_validation_data(validation_data)
    strategy = get_strategy(strategy)
    step_fn = strategy.attach(step_fn)                         # data parallel: gradients averaged over processes
    verbose = verbose if strategy.is_main else 0               # one process reports
    if state is None:
        state = init_fn(seed=0 if seed is None else seed)
    elif not isinstance(state, TrainState):
        raise TypeError(f"train: state must be a TrainState (from init or load_checkpoint), got {type(state).__name__}")
    else:
        if seed is not None and int(seed) != state.seed:
            raise ValueError(f"train: seed={seed} but the state to resume was created with seed {state.seed}; "
                             f"leave seed out when resuming")
        _check_resumed(step_fn, state)
    if device is not None:                                     # one copy now; each step moves only its batch
        device = resolve_device(device)
        state = state._replace(params=to_device(state.params, device), opt_state=to_device(state.opt_state, device))
    copy_ahead = backend(device).copy_ahead if device is not None else None
    epochs_left = max(int(epochs) - state.epoch, 0)
    if targets is None:
        data = _IterableData(inputs, steps_per_epoch, epochs_left)
    else:
        data = _ArrayData(inputs, targets, batch_size, shuffle, steps_per_epoch)
    state = strategy.start(state, data)                        # data parallel: process 0's state on every process

    state, _ = _fire(callbacks, "started", state._replace(stop_training=False), {})
    progress, done = None, state.epoch_step                    # done: batches of the current epoch trained
    try:
        for epoch in range(state.epoch, int(epochs)):
            if state.stop_training:                            # halted by a handler (of "started", ...)
                break
            start = time.perf_counter()
            sums, count = {}, 0                                # metric -> sum over examples; examples seen
            state, halt_epoch = _fire(callbacks, "epoch_started", state, {})
            skip = done if data.replayable else 0              # resuming an interrupted epoch: its first batches
            progress = _Progress(verbose, data.steps, f"Epoch {epoch + 1}/{epochs}", initial=done)
            augment_rng = rng(state.seed, "augment", epoch, *strategy.salt) if augment is not None else None
            halted = halt_epoch or state.stop_training         # by an epoch_started handler: no batches
            batches = _prepared(data.batches(state.seed, epoch, done) if not halted else (), strategy, augment,
                                augment_rng, skip)
            if copy_ahead is not None and data.replayable:   # the next batch's copy overlaps this step
                batches = _copied_ahead(batches, copy_ahead)
            for x, y, n in batches:
                state, halt_epoch = _fire(callbacks, "iteration_started", state, _means(sums, count))
                if halt_epoch or state.stop_training:
                    break
                new_state, metrics = step_fn(state, x, y)
                if terminate_on_nan and not math.isfinite(metrics["loss"]):
                    raise _NonFiniteLoss(metrics["loss"], epoch, done)
                state = new_state
                done += 1
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v * n
                count += n
                progress.step(sums, count)
                state, halt_epoch = _fire(callbacks, "iteration_completed", state, _means(sums, count))
                if halt_epoch or state.stop_training:
                    break
            if state.stop_training:                            # halted mid-epoch: resumable, as after Ctrl-C
                progress.close(_means(sums, count))
                progress = None
                state = state._replace(epoch_step=done)
                if verbose:
                    print(f"Training stopped by a callback at step {state.step} ({state.epoch} complete epochs "
                          f"and {done} batches of the next)", file=sys.stderr, flush=True)
                break
            if halt_epoch:                                     # the epoch ends early, with the batches it ran
                state, _ = _fire(callbacks, "epoch_halted", state, _means(sums, count))
            sums, count = strategy.total(sums, count)          # data parallel: over every process's rows
            if count == 0 and done == 0 and not halt_epoch:   # done > 0: all were trained before an interruption
                raise ValueError(f"train: epoch {epoch + 1} got no batches")
            if count:
                results = {k: v / count for k, v in sums.items()}
            else:                         # all its batches trained before an interruption: their averages are lost
                names = ["loss", *(name for name, _ in getattr(step_fn, "metrics", ())), *state.history]
                results = {k: float("nan") for k in names if not k.startswith("val_")}
            if validation_data is not None:
                val = strategy.from_main(step_fn.evaluate, state.params, *validation_data, validation_batch_size)
                results.update({f"val_{k}": v for k, v in val.items()})
            progress.close(results)
            progress = None
            if verbose == 2:
                print(f"Epoch {epoch + 1}/{epochs} - {time.perf_counter() - start:.1f}s - {_fmt(results)}", flush=True)
            history = {k: list(v) for k, v in state.history.items()}
            for k, v in results.items():
                history.setdefault(k, []).append(v)
            state = state._replace(epoch=epoch + 1, history=history, epoch_step=0)
            done = 0
            state, _ = _fire(callbacks, "epoch_completed", state, results)
            for cb in callbacks if strategy.is_main else ():  # one process writes files
                cb.after_epoch(state)                          # read-only: checkpoints save the final state
            if state.stop_training:
                if verbose:
                    print(f"Training stopped after epoch {epoch + 1} by a callback", file=sys.stderr, flush=True)
                break
        last = {k: v[-1] for k, v in state.history.items() if v}   # the last epoch's results
        state, _ = _fire(callbacks, "halted" if state.stop_training else "completed", state, last)
    except _NonFiniteLoss as stop:
        if progress is not None and progress.bar is not None:
            progress.bar.close()
        state = state._replace(epoch_step=done, stop_training=True)
        warnings.warn(f"train: the loss is {stop.loss} at step {state.step + 1} (epoch {stop.epoch + 1}, batch "
                      f"{stop.batch + 1}): training stopped, returning the state before that step. Look for NaN or "
                      f"inf in the data, or lower the learning rate; terminate_on_nan=False trains on regardless",
                      RuntimeWarning, stacklevel=2)
    except KeyboardInterrupt as error:
        strategy.stop_all(error)                               # data parallel: every process stops (MPI_Abort)
        if progress is not None and progress.bar is not None:
            progress.bar.close()
        state = state._replace(epoch_step=done)
        print(f"\nTraining interrupted: returning the state after step {state.step} ({state.epoch} complete "
              f"epochs and {done} batches of the next); pass it as state= to continue", file=sys.stderr, flush=True)
    except Exception as error:
        strategy.stop_all(error)                               # data parallel: name the rank, stop every process
        raise
    return _run_hooks(callbacks, "on_train_end", state)
