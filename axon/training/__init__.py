"""The training API (after Elixir Axon's, itself inspired by PyTorch Lightning).

- ``step(model, loss, optimizer, metrics=[...])`` or ``step((init_params_fn, objective_fn), optimizer)``
  gives ``Step(init, step)``: ``init(seed) -> TrainState`` and ``step(state, x, y) -> (state, metrics)``.
- ``train(step, x, y, epochs=..., batch_size=..., validation_data=..., callbacks=[...])`` runs the loop
  and returns the final ``TrainState`` (params, optimizer state, epoch, step, history).
- ``evaluate(model, params, x, y, metrics=[...])`` measures a trained model.
- ``callbacks``: early_stopping, checkpoint (+ ``load_checkpoint`` to resume), reduce_lr_on_plateau,
  csv_logger, on_epoch_end, and ``handle_event(event, fn, every=N)`` for any of Axon.Loop's events;
  ``plot_history(state.history, "curves.png")``.

>>> import numpy as np, axon
>>> model = axon.input((None, 784)).dense(128, activation="relu").dropout(rate=0.5).dense(10, activation="softmax")
>>> s = axon.training.step(model, "categorical_cross_entropy", axon.optimizers.adamw(0.005), metrics=["accuracy"])
>>> x = np.zeros((64, 784), np.float32); y = np.eye(10, dtype=np.float32)[np.arange(64) % 10]
>>> state = axon.training.train(s, x, y, epochs=1, batch_size=32, verbose=0)
>>> state.step, sorted(state.history)
(2, ['accuracy', 'loss'])
"""
from . import callbacks
from .callbacks import (EVENTS, Callback, checkpoint, csv_logger, early_stopping, handle_event, load_checkpoint,
                        on_epoch_end, reduce_lr_on_plateau)
from .loop import train
from .plot import plot_history
from .steps import Step, StepFunction, TrainState, evaluate, step, step_key

__all__ = ["step", "train", "evaluate", "Step", "StepFunction", "TrainState", "step_key", "callbacks", "Callback",
           "early_stopping", "checkpoint", "reduce_lr_on_plateau", "csv_logger", "on_epoch_end", "load_checkpoint",
           "plot_history", "handle_event", "EVENTS"]
