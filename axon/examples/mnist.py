"""Train a digit classifier on MNIST: ``python -m axon.examples.mnist``.

The default is the model of the Elixir Axon announcement: 784 -> dense 128 (relu) -> dropout 0.5 ->
dense 10 (softmax), AdamW at 0.005 (decayed along a cosine over the run), categorical cross-entropy,
batches of 128, 5,000 training images held out for validation, and each training batch shifted by
up to one pixel, each image its own way (``--augment 0`` turns that off; the model alone plateaus
just under 98% test accuracy, the shifts take it past). ``--model cnn`` trains a small convolutional network instead
(conv 3x3 32 - max pool - conv 3x3 64 - max pool - dense 128 - dense 10), whose convolutions and
pooling run in axon's numba kernels.

    python -m axon.examples.mnist                          # the MLP
    python -m axon.examples.mnist --model cnn --epochs 5
    python -m axon.examples.mnist --save mnist.safetensors --plot curves.png
    python -m axon.examples.mnist --resume mnist.safetensors --epochs 15     # continue a saved run to epoch 15
    python -m axon.examples.mnist --limit 2000 --epochs 1            # a quick look on a subset
    mpiexec -n 2 python -m axon.examples.mnist --distributed         # data parallel: 2 processes (axon[distributed])
    python -m axon.examples.mnist --device cuda                      # on a GPU (axon[cuda])

From Python, ``main(argv)`` runs the same and returns the results (the final ``TrainState``, the
test accuracy and loss, the seconds taken):

    results = main(["--limit", "1000", "--epochs", "1", "--verbose", "0"])
    print(results["test_accuracy"], results["state"].history["val_accuracy"])
"""
from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np

import axon
from axon.datasets import mnist
from axon.distributed import get_strategy

__all__ = ["build_model", "load_data", "random_shift", "make_optimizer", "main", "DEFAULTS"]

# per model: epochs and learning rate when the flags leave them out
DEFAULTS = {"mlp": {"epochs": 20, "lr": 0.005, "augment": 1}, "cnn": {"epochs": 5, "lr": 0.002, "augment": 1}}


def build_model(kind: str = "mlp"):
    """The MLP of the Axon announcement, or a small CNN (channels-last 28x28x1 input)."""
    if kind == "mlp":
        return (axon.input((None, 784))
                .dense(128, activation="relu")
                .dropout(rate=0.5)
                .dense(10, activation="softmax"))
    if kind == "cnn":
        return (axon.input((None, 28, 28, 1))
                .conv(32, kernel_size=3, activation="relu")          # (N, 26, 26, 32)
                .max_pool(kernel_size=2)                             # (N, 13, 13, 32)
                .conv(64, kernel_size=3, activation="relu")          # (N, 11, 11, 64)
                .max_pool(kernel_size=2)                             # (N, 5, 5, 64)
                .flatten()                                           # (N, 1600)
                .dense(128, activation="relu")
                .dense(10, activation="softmax"))
    raise ValueError(f"build_model: kind must be 'mlp' or 'cnn', got {kind!r}")


def load_data(kind: str = "mlp", limit: int | None = None, validation: int = 5000):
    """``(train, val, test)`` pairs of ``(x, y)``: images flat for the MLP, (28, 28, 1) for the CNN.

    The last ``validation`` training images are held out; ``limit`` keeps only the first ``limit``
    images of each split (validation taken from inside the limit), for quick runs.
    """
    flatten = kind == "mlp"
    x, y = mnist.load("train", flatten=flatten)
    x_test, y_test = mnist.load("test", flatten=flatten)
    if limit is not None:
        x, y, x_test, y_test = x[:limit], y[:limit], x_test[:limit], y_test[:limit]
        validation = min(validation, len(x) // 10)
    n_train = len(x) - validation
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:]), (x_test, y_test)


def random_shift(x, rng, max_shift: int = 1):
    """Move each image by its own random offset of up to ``max_shift`` pixels per axis (zeros fill in).

    Training-time augmentation: a digit moved by a pixel is the same digit, so the network learns to
    ignore small translations. ``x`` is ``(N, 784)`` or ``(N, 28, 28, 1)``; ``rng`` a numpy Generator.
    Image ``n`` moved by ``(dy, dx)`` has ``out[i, j] = image[i - dy, j - dx]``: in the image padded by
    ``m = max_shift`` zeros, that is the 28x28 window starting at ``(m - dy, m - dx)``.
    """
    m = int(max_shift)
    n = len(x)
    images = x.reshape(n, 28, 28)                                       # (N, 784) or (N, 28, 28, 1) -> (N, 28, 28)
    padded = np.pad(images, ((0, 0), (m, m), (m, m)))                   # (N, 28 + 2m, 28 + 2m)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (28, 28), axis=(1, 2))  # (N, 2m+1, 2m+1, 28, 28)
    dy, dx = rng.integers(-m, m + 1, size=(2, n))                       # (N,) offsets per axis
    return windows[np.arange(n), m - dy, m - dx].reshape(x.shape)       # (N, 28, 28) -> x's shape


def make_optimizer(lr: float, total_steps: int, schedule: str = "cosine"):
    """AdamW at ``lr``, constant or decayed to 0 along a cosine over ``total_steps``."""
    if schedule == "cosine":
        lr = axon.schedules.cosine_decay(lr, decay_steps=max(total_steps, 1))
    elif schedule != "constant":
        raise ValueError(f"make_optimizer: schedule must be 'cosine' or 'constant', got {schedule!r}")
    return axon.optimizers.adamw(lr)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m axon.examples.mnist",
                                description="Train a digit classifier (an MLP or a small CNN) on MNIST with axon.")
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp", help="which network to train (default mlp)")
    per_model = {key: ", ".join(f"{kind} {d[key]}" for kind, d in DEFAULTS.items()) for key in DEFAULTS["mlp"]}
    p.add_argument("--epochs", type=int, default=None, help=f"epochs in total (default {per_model['epochs']})")
    p.add_argument("--batch-size", type=int, default=128, help="examples per step (default 128)")
    p.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default {per_model['lr']})")
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine", help="learning-rate schedule (default cosine)")
    p.add_argument("--augment", type=int, default=None, metavar="PIXELS",
                   help=f"shift training batches by up to this many pixels, 0 for none (default {per_model['augment']})")
    p.add_argument("--seed", type=int, default=0, help="seeds the params, the shuffles and the dropout masks (default 0)")
    p.add_argument("--validation", type=int, default=5000, help="training images held out for validation (default 5000)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images of each split")
    p.add_argument("--save", metavar="PATH", default=None, help="checkpoint the training state here every epoch")
    p.add_argument("--resume", metavar="PATH", default=None, help="continue from a checkpoint saved with --save")
    p.add_argument("--plot", metavar="PATH", default=None, help="write the training curves to this PNG")
    p.add_argument("--distributed", action="store_true",
                   help="data parallel over the processes started by mpiexec: each takes its share of every batch")
    p.add_argument("--device", default=None,
                   help="where params, optimizer state and batches live: cpu (default) or cuda (axon[cuda], a GPU)")
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1, help="1: progress bars (default), 2: a line per epoch, 0: quiet")
    return p


def main(argv=None) -> dict:
    """Run the example with command-line arguments ``argv``; return the final state and test metrics."""
    start = time.perf_counter()
    args = _parser().parse_args(argv)
    epochs = args.epochs if args.epochs is not None else DEFAULTS[args.model]["epochs"]
    lr = args.lr if args.lr is not None else DEFAULTS[args.model]["lr"]
    shift = args.augment if args.augment is not None else DEFAULTS[args.model]["augment"]
    if args.limit is not None and args.limit < 20:
        raise SystemExit("--limit must be at least 20")
    if args.plot and importlib.util.find_spec("matplotlib") is None:   # say so now, not after training
        raise SystemExit("--plot needs matplotlib: pip install 'axon[plot]' (or pip install matplotlib)")
    strategy = get_strategy("data_parallel" if args.distributed else None)
    if args.device is not None:
        try:
            axon.backend.backend(args.device)                  # an unknown or unusable device: say so now
        except (ValueError, ImportError, RuntimeError) as e:
            raise SystemExit(f"--device {args.device}: {e}")
    say = print if args.verbose and strategy.is_main else (lambda *a, **k: None)   # process 0 reports

    (x, y), (x_val, y_val), (x_test, y_test) = load_data(args.model, args.limit, args.validation)
    model = build_model(args.model)
    say(axon.summary(model))
    say(f"Training on {len(x)} images, validating on {len(x_val)}, testing on {len(x_test)}"
        + (f", in {strategy.size} processes" if strategy.size > 1 else ""))

    steps_per_epoch = -(-len(x) // args.batch_size)
    optimizer = make_optimizer(lr, epochs * steps_per_epoch, args.schedule)
    step = axon.training.step(model, "categorical_cross_entropy", optimizer, metrics=["accuracy"])
    monitor = "val_accuracy" if len(x_val) else "accuracy"
    callbacks = [axon.training.checkpoint(args.save, monitor=monitor)] if args.save else []
    state = axon.training.load_checkpoint(args.resume) if args.resume else None
    state = axon.training.train(step, x, y, epochs=epochs, batch_size=args.batch_size,
                                seed=None if state else args.seed, state=state,
                                validation_data=(x_val, y_val) if len(x_val) else None,
                                callbacks=callbacks, verbose=args.verbose, strategy=strategy, device=args.device,
                                augment=(lambda xb, rng: random_shift(xb, rng, shift)) if shift else None)

    test = strategy.from_main(lambda: axon.training.evaluate(model, state.params, x_test, y_test, metrics=["accuracy"],
                                                             loss="categorical_cross_entropy", batch_size=1000))
    if args.plot and strategy.is_main:
        axon.training.plot_history(state.history, args.plot, title=f"MNIST {args.model}")
        say(f"Training curves written to {args.plot}")
    seconds = time.perf_counter() - start
    if strategy.is_main:
        print(f"Test accuracy: {100 * test['accuracy']:.2f}% (loss {test['loss']:.4f}) "
              f"after {state.epoch} epochs, {seconds:.1f} s in all")
    return {"state": state, "test_accuracy": test["accuracy"], "test_loss": test["loss"], "seconds": seconds,
            "model": model}


if __name__ == "__main__":
    main()
