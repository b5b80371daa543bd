"""One training step, as a pair of functions: ``init`` makes a ``TrainState``, ``step`` advances it.

As in Elixir Axon's ``Loop.train_step`` (after PyTorch Lightning), a step is built from *what* to
minimise and *how*:

- the general form takes any differentiable objective: ``step((init_params_fn, objective_fn), optimizer)``
  with ``objective_fn(params, x, y) -> loss`` (a scalar Tensor);
- the model form is a convenience on top of it: ``step(model, "categorical_cross_entropy", optimizer)``
  builds the objective ``loss(y, model(params, x))``, trains only the trainable params, and carries the
  layers' state (batch-norm statistics) forward.

One step computes the loss and its gradient (reverse mode, ``value_and_grad``), asks the optimizer (a
``GradientTransformation``: clipping, accumulation and schedules live in its chain) for the updates,
and adds them to the params:

    loss, g = value_and_grad(objective)(params, x, y)
    updates, opt_state = optimizer.update(g, opt_state, params)
    params = params + updates

>>> import numpy as np, axon
>>> objective = lambda p, x, y: ((x @ p["w"] - y) ** 2).mean()        # least squares
>>> init, step_fn = step((lambda seed: {"w": np.zeros((2, 1))}, objective), axon.optimizers.sgd(0.1))
>>> state = init(seed=0)
>>> x, y = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[2.0], [-1.0]])
>>> for _ in range(200):
...     state, metrics = step_fn(state, x, y)
>>> state.params["w"].ravel().round(3), state.step
(array([ 2., -1.]), 200)
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable, NamedTuple

import numpy as np

from ..autograd import Tensor, no_grad, value_and_grad
from ..backend import device_of, resolve_device, to_device, to_host
from ..tracing import TraceError, jit
from ..model.run import _to_numpy as _data          # Tensors (in a dict/list/tuple) as arrays
from ..privacy import needs_per_example_grads, per_example_grads
from ..tree import tensor_map, tree_leaves, tree_map
from ..updates import apply_updates

__all__ = ["TrainState", "Step", "StepFunction", "step", "evaluate", "step_key", "MAX_PLANS"]

MAX_PLANS = 32          # signatures (batch shapes, lr_scale values) the whole step is traced for, at most


class TrainState(NamedTuple):
    """Everything a training run needs to continue: save it, load it, and ``train`` picks up from it.

    - ``params``: the model's params, trainable ones and layer state (batch-norm statistics) in one tree;
    - ``opt_state``: the optimizer's state (moments, step counts);
    - ``epoch`` / ``step``: epochs completed and optimizer steps taken;
    - ``history``: per-epoch metrics, ``{"loss": [...], "accuracy": [...], "val_loss": [...], ...}``;
    - ``seed``: the run's seed; the dropout key of step ``s`` is ``step_key(seed, s)``;
    - ``lr_scale``: multiplies every update (``reduce_lr_on_plateau`` lowers it);
    - ``callbacks``: the small state callbacks keep (best value so far, patience counters), by name;
    - ``stop_training``: set by a callback to end training after the current epoch;
    - ``epoch_step``: batches of epoch ``epoch`` already trained on when training was interrupted
      (Ctrl-C); ``train`` skips them when it resumes, so the run continues exactly. 0 at an epoch's end.

    >>> import axon
    >>> init, _ = step((lambda seed: {"w": np.zeros(2)}, lambda p, x, y: (p["w"] ** 2).sum()), axon.optimizers.sgd(0.1))
    >>> state = init(seed=3)                                   # a fresh run
    >>> state.epoch, state.step, state.history, state.seed, state.lr_scale
    (0, 0, {}, 3, 1.0)
    """
    params: Any
    opt_state: Any
    epoch: int
    step: int
    history: dict
    seed: int
    lr_scale: float
    callbacks: dict
    stop_training: bool = False
    epoch_step: int = 0


def step_key(seed: int, step: int) -> int:
    """The random key of step ``step`` in a run seeded ``seed``: ``seed * 2**32 + step``.

    Distinct for every (seed, step) pair, and a function of nothing else, so step 17 draws the same
    dropout masks whether or not the run was resumed from a checkpoint in between.
    (``axon.random.rng`` hashes the key through a ``SeedSequence``, so nearby keys give unrelated streams.)

    >>> step_key(seed=0, step=5), step_key(seed=1, step=5)     # 1 * 2**32 + 5
    (5, 4294967301)
    """
    return ((int(seed) & 0xFFFFFFFF) << 32) | (int(step) & 0xFFFFFFFF)


def _mean_loss(value) -> Tensor:
    """A loss as one scalar Tensor: per-example losses are averaged."""
    if not isinstance(value, Tensor):
        raise TypeError(f"step: the loss must be a Tensor (built from axon operations), got {type(value).__name__}")
    return value if value.ndim == 0 else value.mean()


def _accepts(fn, name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name`` (or ``**kwargs``)."""
    try:
        ps = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in ps)


def _takes_arguments(fn) -> bool:
    """Whether ``fn`` accepts at least one positional argument (unknown signatures: assume so)."""
    try:
        ps = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in ps)


def _resolve_loss(loss) -> Callable:
    """The loss function: ``loss`` itself, axon's loss of that name, or a weighted sum over several outputs."""
    if isinstance(loss, str):
        from ..functional import losses
        return losses.get(loss)
    if callable(loss):
        return loss
    if isinstance(loss, (list, tuple, dict)) and loss:
        return _weighted_losses(loss)
    raise TypeError(f"step: loss must be a name such as 'categorical_cross_entropy', a function "
                    f"loss(y_true, y_pred) -> Tensor, or a list of (loss, weight) pairs (one per model output), "
                    f"got {type(loss).__name__}")


def _weighted_losses(pairs) -> Callable:
    """``sum_i w_i mean(loss_i(y_true[i], y_pred[i]))`` over a model's outputs (Axon's list of ``{loss, weight}``).

    ``pairs``: a list of ``(loss, weight)``, one per output of a list/tuple container, or a dict
    ``{output: (loss, weight)}`` for a dict container; targets come in the same structure.

    >>> total = _weighted_losses([("mean_squared_error", 0.5), ("mean_absolute_error", 2.0)])
    >>> y_true, y_pred = (np.zeros((2, 1)), np.zeros((2, 1))), (np.ones((2, 1)), np.full((2, 1), 3.0))
    >>> float(total(y_true, y_pred))                          # 0.5 * 1 + 2 * 3
    6.5
    """
    items = list(pairs.items()) if isinstance(pairs, dict) else list(enumerate(pairs))
    resolved = []
    for key, pair in items:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise TypeError(f"step: each multi-output loss must be a pair (loss, weight), got {pair!r} for output {key!r}")
        fn, weight = pair
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)):
            raise TypeError(f"step: the weight of output {key!r}'s loss must be a number, got {type(weight).__name__}")
        resolved.append((key, _resolve_loss(fn), float(weight)))

    def weighted(y_true, y_pred):
        if isinstance(pairs, dict):
            if not (isinstance(y_true, dict) and isinstance(y_pred, dict)):
                raise TypeError(f"step: losses given by output name need dict targets and a dict container model, "
                                f"got {type(y_true).__name__} targets and {type(y_pred).__name__} outputs")
        elif not (isinstance(y_true, (list, tuple)) and isinstance(y_pred, (list, tuple))
                  and len(y_true) == len(y_pred) == len(resolved)):
            raise ValueError(f"step: {len(resolved)} (loss, weight) pairs need {len(resolved)} model outputs and "
                             f"targets (a list/tuple each), got {_count_of(y_pred)} outputs and {_count_of(y_true)} targets")
        total = None
        for key, fn, weight in resolved:
            term = _mean_loss(fn(y_true[key], y_pred[key])) * weight
            total = term if total is None else total + term
        return total
    return weighted


def _count_of(tree) -> str:
    return str(len(tree)) if isinstance(tree, (list, tuple, dict)) else f"one {type(tree).__name__}"


def _resolve_metrics(metrics) -> list[tuple[str, Callable]]:
    """``[(name, fn)]`` from names, functions, or a dict ``{name: fn}``."""
    if metrics is None:
        return []
    items = metrics.items() if isinstance(metrics, dict) else [(None, m) for m in metrics]
    out = []
    for name, m in items:
        if isinstance(m, str):
            from ..functional import metrics as metric_fns
            name, m = name or m, metric_fns.get(m)
        elif not callable(m):
            raise TypeError(f"step: each metric must be a name or a function metric(y_true, y_pred), "
                            f"got {type(m).__name__}")
        name = name or getattr(m, "__name__", f"metric_{len(out)}")
        if name == "loss" or name in (n for n, _ in out):
            raise ValueError(f"step: metric name {name!r} is used twice (or clashes with 'loss'); "
                             f"pass a dict {{name: fn}} to name them")
        out.append((name, m))
    return out


def _check_optimizer(optimizer):
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"step: optimizer must be a GradientTransformation (with init and update), such as "
                        f"axon.optimizers.adamw(0.005); got {type(optimizer).__name__}")


class StepFunction:
    """``step_fn(state, x, y) -> (new_state, metrics)``: one optimizer step on one batch.

    ``metrics`` is a dict of Python floats: ``"loss"`` and each requested metric, measured on this
    batch's predictions (the forward pass the gradient used, so they cost no extra forward).
    ``evaluate(params, x, y)`` gives the same numbers in inference mode, for validation.

    >>> import axon
    >>> objective = lambda p, x, y: ((x @ p["w"] - y) ** 2).mean()    # w starts at 0, the best w is 1
    >>> init, step_fn = step((lambda seed: {"w": np.zeros((1, 1))}, objective), axon.optimizers.sgd(0.1))
    >>> state, metrics = step_fn(init(), np.ones((4, 1)), np.ones((4, 1)))   # w: 0 -> 0.2
    >>> metrics, round(step_fn.evaluate(state.params, np.ones((4, 1)), np.ones((4, 1)))["loss"], 4)
    ({'loss': 1.0}, 0.64)
    """

    def __init__(self, objective, evaluate_fn, optimizer, metrics, split=None, merge=None, compile=True,
                 donate=False):
        self.objective = objective                 # (trainable, frozen, x, y, key) -> (loss, (y_pred, new_state))
        self.optimizer = optimizer
        self.metrics = metrics                     # [(name, fn)]
        self._split, self._merge, self._evaluate = split, merge, evaluate_fn
        self._value_and_grad = value_and_grad(objective, argnums=0, has_aux=True)
        # compile: the whole step (loss, gradient, optimizer update, new params and state) traced once per
        # batch shape and replayed (axon.jit); the key and the optimizer's step counts are input arrays, so
        # each step's dropout masks and bias corrections are new. An optimizer that reads values on the host
        # leaves only the loss and gradient traced (self.compiled_grads); an objective that does, nothing.
        # donate: the params and optimizer state passed in are given up, so the update writes over them
        self.compiled = jit(self._whole_step, donate_argnums=(0, 2) if donate else ()) if compile else None
        self.compiled_grads = jit(self._value_and_grad) if compile else None
        self.replica = None                        # data parallel: set on a copy by axon.distributed.DataParallel
        self._per_example = needs_per_example_grads(optimizer)     # dpsgd: one gradient per example
        self._untraced = None                      # why the whole step did not trace (warned about once)

    def _whole_step(self, trainable, frozen, opt_state, x, y, key, lr_scale):
        """One step as a function of arrays: ``(loss, y_pred, new_state, params, opt_state)`` (what is traced)."""
        (loss, (y_pred, new_state)), grads = self._value_and_grad(trainable, frozen, x, y, key)
        updates, opt_state = self._update(grads, opt_state, trainable, lr_scale)
        return loss, y_pred, new_state, apply_updates(trainable, updates), opt_state

    def _update(self, grads, opt_state, trainable, lr_scale):
        updates, opt_state = self.optimizer.update(grads, opt_state, trainable)
        if lr_scale != 1.0:                        # a Python float: float32 updates stay float32
            updates = tensor_map(lambda u: u * lr_scale, updates)
        return updates, opt_state

    def _compiled_step(self, trainable, frozen, opt_state, x, y, key, lr_scale):
        """The traced whole step, or None (and from now on) when the optimizer cannot be traced."""
        try:
            out = self.compiled(trainable, frozen, opt_state, x, y, np.asarray(key, np.uint64), lr_scale)
        except (TraceError, AttributeError) as e:   # Python reads a value: trace less from now on
            self.compiled, self._untraced = None, e     # (said once the gradient alone has been tried)
            return None
        if len(self.compiled.plans) > MAX_PLANS:     # a Python number in the state that changes every step
            self.compiled, self._untraced = None, (f"it was traced {MAX_PLANS + 1} times (a Python number in "
                                                   f"the optimizer state, or lr_scale, changes from step to step)")
        return out

    def _loss_and_grads(self, trainable, frozen, x, y, key):
        if self.compiled_grads is not None:
            try:
                return self.compiled_grads(trainable, frozen, x, y, np.asarray(key, np.uint64))
            except (TraceError, AttributeError) as e:   # Python reads a value: run it eagerly from now on
                warnings.warn(f"axon.training.step: the objective cannot be traced, so it runs eagerly "
                              f"(pass compile=False to say so and silence this): {e}", stacklevel=3)
                self.compiled_grads = None
        return self._value_and_grad(trainable, frozen, x, y, key)

    def __call__(self, state: TrainState, x, y):
        if self._split is not None:
            trainable, frozen = self._split(state.params)
        else:
            trainable, frozen = state.params, None
        device = device_of(trainable)
        if device != "cpu":                        # the batch goes where the params live
            x, y = to_device((x, y), device)
        key = step_key(state.seed, state.step)
        if self.replica is not None:               # data parallel: this process's own dropout masks ...
            key = self.replica.local_key(key)
        whole = None
        if self.compiled is not None and self.replica is None and not self._per_example:
            whole = self._compiled_step(trainable, frozen, state.opt_state, x, y, key, state.lr_scale)
        if whole is not None:
            loss, y_pred, new_state, params, opt_state = whole
        else:
            if self._per_example:                  # the optimizer clips each example's gradient (DP-SGD; eager)
                with no_grad():
                    loss, (y_pred, new_state) = self.objective(tree_map(Tensor._wrap, trainable), frozen, x, y, key)
                grads = per_example_grads(lambda p, xb, yb: self.objective(p, frozen, xb, yb, key)[0],
                                          trainable, x, y)
            else:
                (loss, (y_pred, new_state)), grads = self._loss_and_grads(trainable, frozen, x, y, key)
                if self._untraced is not None and self.compiled_grads is not None:
                    warnings.warn(f"axon.training.step: the optimizer update cannot be traced, so only the loss "
                                  f"and gradient are compiled and the update runs eagerly (pass compile=False to "
                                  f"run all of it eagerly and silence this): {self._untraced}", stacklevel=2)
                self._untraced = None
            if self.replica is not None:           # ... and the whole batch's gradient, averaged over processes
                grads, new_state = self.replica.average((grads, new_state), x)
            updates, opt_state = self._update(grads, state.opt_state, trainable, state.lr_scale)
            params = apply_updates(trainable, updates)
        if frozen or new_state:                    # put back the untrained params and the layers' new state
            params = self._merge(params, frozen, new_state)
        metrics = {"loss": float(to_host(loss))}             # the one number that comes back every step
        if self.metrics:
            y_pred = _data(y_pred)
            for name, fn in self.metrics:
                metrics[name] = float(fn(y, y_pred))
        return state._replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

    def evaluate(self, params, x, y, batch_size: int = 1000) -> dict:
        """``{"loss": ..., metric: ...}`` over ``(x, y)`` in inference mode (dropout off)."""
        return self._evaluate(params, x, y, batch_size)


class Step(NamedTuple):
    """``init, step_fn = axon.training.step(...)``: ``init(seed=0, params=None) -> TrainState`` and the step.

    >>> import axon
    >>> s = step((lambda seed: {"w": np.zeros(1)}, lambda p, x, y: ((p["w"] - 1) ** 2).sum()), axon.optimizers.sgd(0.1))
    >>> s._fields, type(s.step).__name__
    (('init', 'step'), 'StepFunction')
    """
    init: Callable
    step: StepFunction


def _make_init(init_params, split, optimizer):
    def init(seed: int = 0, params=None) -> TrainState:
        """A fresh ``TrainState``: params from ``init_params(seed)`` (or the given ones), optimizer state for them."""
        if params is None:
            params = init_params(seed)
        trainable = split(params)[0] if split is not None else params
        return TrainState(params=params, opt_state=optimizer.init(trainable), epoch=0, step=0, history={},
                          seed=int(seed), lr_scale=1.0, callbacks={}, stop_training=False)
    return init


def _batches(x, y, batch_size):
    """Consecutive ``(x, y)`` slices of at most ``batch_size`` rows (trees of arrays allowed)."""
    n = len(tree_leaves(x)[0])
    if n == 0:
        raise ValueError("evaluate: no examples to evaluate (x is empty)")
    for lo in range(0, n, batch_size):
        take = slice(lo, lo + batch_size)
        yield tree_map(lambda a: a[take], x), tree_map(lambda a: a[take], y), min(batch_size, n - lo)


def _concat(parts):
    """Concatenate a list of equally structured trees of arrays along the first axis."""
    return tree_map(lambda *leaves: np.concatenate([np.asarray(a) for a in leaves]), *parts)


def _logits_behind_softmax(model, loss_fn):
    """The node before ``model``'s final softmax, when ``loss_fn`` is a cross-entropy; else None.

    As Elixir Axon does, such a loss is then computed from the logits (``from_logits=True``): the same
    value as from the probabilities, but exact when they saturate (no clipping at 1e-7), and one fused
    kernel for the softmax, the log and the sum. It applies to ``"categorical_cross_entropy"`` (and the
    sparse one), given by name or as ``axon.losses.categorical_cross_entropy``; a loss function of
    your own gets the probabilities, as the model outputs them. ``loss_fn`` is the resolved function
    (``_resolve_loss``), so a name and the function itself are one case.
    """
    from ..functional import losses
    is_cross_entropy = loss_fn is losses.categorical_cross_entropy or loss_fn is losses.sparse_categorical_cross_entropy
    if not (model.op == "softmax" and is_cross_entropy):
        return None
    axis = model.opts.get("axis", -1)
    return model.parents[0] if axis in (-1, len(model.shape) - 1) else None


def _probabilities(logits):
    """softmax(logits) as an array, for the metrics (no graph)."""
    from .. import kernels
    with no_grad():
        return kernels.softmax(_data(logits)).data


def _model_step(model, loss, optimizer, metrics, compile, donate) -> Step:
    from ..model import merge
    loss_fn = _resolve_loss(loss)
    logits_model = _logits_behind_softmax(model, loss_fn)

    def objective(trainable, frozen, x, y, key):
        params = merge(trainable, frozen)
        if logits_model is None:
            y_pred, new_state = model.apply(params, x, training=True, key=key)
            return _mean_loss(loss_fn(y, y_pred)), (y_pred, new_state)
        logits, new_state = logits_model.apply(params, x, training=True, key=key)
        y_pred = _probabilities(logits) if metrics else None
        return _mean_loss(loss_fn(y, logits, from_logits=True)), (y_pred, new_state)

    def evaluate_fn(params, x, y, batch_size):
        return _evaluate(model, params, x, y, metrics, loss_fn, batch_size)

    split = model.split
    fn = StepFunction(objective, evaluate_fn, optimizer, metrics, split=split, merge=merge, compile=compile,
                      donate=donate)
    return Step(_make_init(lambda seed: model.init(seed=seed), split, optimizer), fn)


def _objective_step(init_params, objective_fn, optimizer, metrics, compile, donate) -> Step:
    if not callable(objective_fn):
        raise TypeError(f"step: the objective must be a function objective(params, x, y) -> loss, "
                        f"got {type(objective_fn).__name__}")
    wants_key, wants_training = _accepts(objective_fn, "key"), _accepts(objective_fn, "training")

    def call(params, x, y, key, training):
        kwargs = {}
        if wants_key:
            kwargs["key"] = key
        if wants_training:
            kwargs["training"] = training
        out = objective_fn(params, x, y, **kwargs)
        loss, y_pred = out if isinstance(out, tuple) else (out, None)
        if metrics and y_pred is None:
            raise ValueError("step: metrics need predictions: let the objective return (loss, y_pred)")
        return _mean_loss(loss), y_pred

    def objective(trainable, frozen, x, y, key):
        loss, y_pred = call(trainable, x, y, key, True)
        return loss, (y_pred, {})

    def evaluate_fn(params, x, y, batch_size):
        total, n, preds = 0.0, 0, []
        device = device_of(params)
        params = tree_map(Tensor._wrap, params)    # Tensors, as during training, so Tensor methods work
        with no_grad():
            for xb, yb, nb in _batches(x, y, batch_size):
                xb, yb = to_device((xb, yb), device)
                loss, y_pred = call(params, xb, yb, None, False)
                total, n = total + float(loss) * nb, n + nb
                preds.append(_data(y_pred))
        out = {"loss": total / max(n, 1)}
        if metrics:
            y_pred = _concat(preds)
            out.update({name: float(fn(y, y_pred)) for name, fn in metrics})
        return out

    if callable(init_params):
        make = (lambda seed: init_params(seed)) if _takes_arguments(init_params) else (lambda seed: init_params())
    else:                                          # an initial params tree itself: every run starts from a copy
        make = lambda seed: tree_map(np.copy, init_params)  # noqa: E731
    fn = StepFunction(objective, evaluate_fn, optimizer, metrics, compile=compile, donate=donate)
    return Step(_make_init(make, None, optimizer), fn)


def step(model, loss=None, optimizer=None, metrics=None, compile=None, donate=False) -> Step:
    """Build a training step: ``init, step_fn = step(model, loss, optimizer, metrics=["accuracy"])``.

    Two forms, as in Elixir Axon:

    - ``step(model, loss, optimizer)``: ``model`` is an ``axon`` model, ``loss`` a name
      (``"categorical_cross_entropy"``) or a function ``loss(y_true, y_pred) -> Tensor`` (per-example
      losses are averaged), or for a model with several outputs a list of ``(loss, weight)`` pairs
      (a dict by output name for a dict container): the weighted sum of the outputs' mean losses, with
      targets in the same structure. Only the trainable params are differentiated and updated; layer state
      (batch-norm running statistics) is carried along; dropout keys derive from ``(seed, step)``.
    - ``step((init_params_fn, objective_fn), optimizer)``: any differentiable objective.
      ``init_params_fn(seed) -> params`` (or a params tree to start from), and
      ``objective_fn(params, x, y) -> loss`` or ``-> (loss, y_pred)`` when metrics are wanted; it may
      also accept ``key=`` (an int, for its own randomness) and ``training=`` (False during evaluation).

    ``optimizer`` is a ``GradientTransformation`` (``axon.optimizers.adamw(0.005)``); gradient clipping
    and accumulation are transformations in its chain. ``metrics`` are names (``"accuracy"``) or
    functions ``metric(y_true, y_pred)``, or a dict ``{name: fn}``.

    ``compile`` (default True): the whole step (the loss, its gradient, the optimizer update and the new
    params and state) is traced by ``axon.jit`` on the first batch of each shape and replayed after (the
    same kernels in the same order: bit-identical results, without the Python graph). The dropout key,
    the optimizer's step counts and a schedule's step are input arrays, so every replay uses its own.
    An optimizer whose Python reads values (a trust ratio as a float, noise drawn on the host) leaves
    only the loss and gradient traced; an objective whose Python reads values runs eagerly; each says so
    with a warning, once. A replay skips your objective's Python, so side effects in it (counting calls,
    raising at step n) happen only while tracing: pass ``compile=False`` (the eager step) for those.

    ``donate`` (default False; ``donate_argnums`` in ``jax.jit``): you give up the state you pass, so the
    compiled step updates its params and optimizer moments in place (as PyTorch's ``optimizer.step()``
    does; ~8% of an MNIST MLP step, no fresh arrays): use only the returned state afterwards, and keep a
    copy (``tree_map(np.copy, state.params)``) of any params you want to keep.

    Returns ``Step(init, step)``: ``init(seed=0, params=None) -> TrainState`` and
    ``step(state, x_batch, y_batch) -> (new_state, {"loss": float, metric: float})``.

    >>> import numpy as np, axon
    >>> model = axon.input((None, 4)).dense(3, activation="softmax")
    >>> init, step_fn = step(model, "categorical_cross_entropy", axon.optimizers.adamw(0.01), metrics=["accuracy"])
    >>> state = init(seed=0)
    >>> state, m = step_fn(state, np.ones((2, 4), np.float32), np.eye(3, dtype=np.float32)[:2])
    >>> sorted(m), state.step
    (['accuracy', 'loss'], 1)
    """
    metric_list = _resolve_metrics(metrics)
    if isinstance(model, tuple) and not hasattr(model, "apply"):
        if len(model) != 2:
            raise TypeError(f"step: the objective form is step((init_params_fn, objective_fn), optimizer); "
                            f"got a tuple of {len(model)} items")
        if optimizer is None:                      # step((init, objective), optimizer): no loss argument
            optimizer, loss = loss, None
        if loss is not None:
            raise TypeError("step: the objective form takes no loss (the objective is the loss): "
                            "step((init_params_fn, objective_fn), optimizer)")
        _check_optimizer(optimizer)
        return _objective_step(model[0], model[1], optimizer, metric_list, compile is None or bool(compile),
                               bool(donate))
    if not (hasattr(model, "apply") and hasattr(model, "init")):
        raise TypeError(f"step: expects an axon model or a pair (init_params_fn, objective_fn), "
                        f"got {type(model).__name__}")
    if loss is None:
        raise TypeError("step: the model form needs a loss: step(model, 'categorical_cross_entropy', optimizer)")
    _check_optimizer(optimizer)
    return _model_step(model, loss, optimizer, metric_list, compile is None or bool(compile), bool(donate))


def evaluate(model, params, x, y, metrics=None, batch_size: int = 256, loss=None, device=None) -> dict:
    """Metrics of ``model`` with ``params`` on ``(x, y)``, in inference mode: ``{"accuracy": 0.98, ...}``.

    Predictions are made ``batch_size`` rows at a time, then every metric (and ``loss``, if given as a
    name or function) is computed once over all of them, so the numbers are exact, not batch averages.
    ``params`` may also be a ``TrainState``. It runs where the params live, or on ``device``.

    >>> import numpy as np, axon
    >>> model = axon.input((None, 2)).dense(2, activation="softmax")
    >>> params = model.init(seed=0)
    >>> sorted(evaluate(model, params, np.ones((5, 2), np.float32), np.eye(2, dtype=np.float32)[[0] * 5],
    ...                 metrics=["accuracy"], loss="categorical_cross_entropy"))
    ['accuracy', 'loss']
    """
    metric_list = _resolve_metrics(metrics)
    loss_fn = _resolve_loss(loss) if loss is not None else None
    if device is not None:
        params = to_device(params.params if isinstance(params, TrainState) else params, resolve_device(device))
    return _evaluate(model, params, x, y, metric_list, loss_fn, batch_size)


def _evaluate(model, params, x, y, metric_list, loss_fn, batch_size) -> dict:
    """``evaluate`` with the metrics and the loss already resolved (``step`` resolves them once)."""
    if isinstance(params, TrainState):
        params = params.params
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be a positive int, got {batch_size!r}")
    n_x, n_y = len(tree_leaves(x)[0]), len(tree_leaves(y)[0])
    if n_x != n_y:
        raise ValueError(f"evaluate: x has {n_x} examples but y has {n_y}")
    logits_model = _logits_behind_softmax(model, loss_fn)
    net = model if logits_model is None else logits_model
    with no_grad():
        out_pred = _concat([net.predict(params, xb) for xb, _, _ in _batches(x, y, batch_size)])
        y_pred = out_pred if logits_model is None else _probabilities(out_pred)
        out = {}
        if loss_fn is not None:
            loss_value = loss_fn(y, out_pred, from_logits=True) if logits_model is not None else loss_fn(y, y_pred)
            out["loss"] = float(_mean_loss(loss_value).data)
        for name, fn in metric_list:
            out[name] = float(fn(y, y_pred))
    return out
