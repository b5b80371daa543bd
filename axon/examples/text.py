"""Train a character-level language model on Hamlet: ``python -m axon.examples.text``.

The text ships with axon (``axon/examples/data/hamlet.txt``, public domain; see the README there).
Its last tenth is held out. The model reads ``--seq-len`` characters and predicts each next one:

- ``--model gru`` (the default): embedding 64 -> GRU (``--hidden``, the fused kernel) -> dense to the vocabulary;
- ``--model transformer``: embedding + learned positions -> 2 pre-norm transformer blocks (causal
  self-attention, 4 heads) -> layer norm -> dense.

Adam with the gradient's global norm clipped to 1, windows drawn at random from the training text.
It prints the unigram baseline (the bits per character of a model that knows only how often each
character occurs), the validation loss in bits per character as it trains, and a sampled paragraph.
The validation loss covers the whole held-out tenth, cut into windows of ``--seq-len`` characters
(all of it but the last window's worth), run in batches of 64 windows.

    python -m axon.examples.text                            # GRU, a few minutes on 2 cores
    python -m axon.examples.text --model transformer
    python -m axon.examples.text --quick                    # a few steps, to see that it runs

From Python, ``main(argv)`` returns ``{"baseline_bits", "val_bits", "sample", "params", "seconds"}``.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import axon
from axon import kernels, layers as L
from axon.autograd import value_and_grad
from axon.updates import apply_updates, chain, clip_by_global_norm

__all__ = ["load_text", "build_model", "main"]

TEXT = Path(__file__).parent / "data" / "hamlet.txt"
QUICK = {"steps": 60, "hidden": 32, "width": 32, "seq_len": 32, "batch_size": 8, "sample": 80, "eval_every": 30}


def load_text(path=TEXT, validation=0.1):
    """``(train ids, validation ids, vocabulary)``: the text as int ids into its sorted characters."""
    text = Path(path).read_text(encoding="utf-8")
    vocab = sorted(set(text))
    ids = np.searchsorted(np.array(vocab), np.array(list(text))).astype(np.int64)   # vocab is sorted
    n_val = int(len(ids) * validation)
    return ids[:-n_val], ids[-n_val:], vocab


def build_model(kind, vocab_size, seq_len, hidden=256, width=128):
    """(None, seq_len) character ids -> (None, seq_len, vocab_size) logits of the next character."""
    x = axon.input((None, seq_len), name="chars")
    if kind == "gru":
        seq, _ = x.embedding(vocab_size, 64).gru(hidden)
        return seq.dense(vocab_size)
    if kind == "transformer":
        h = x.embedding(vocab_size, width, kernel_initializer="normal")
        h = axon.layer(L.learned_positional_embedding, [h], params={"kernel": axon.param((seq_len, width), "normal")},
                       name="positions")
        for i in range(2):
            h = h.transformer_block(num_heads=4, mlp_units=4 * width, causal=True, name=f"block_{i}")
        return h.layer_norm().dense(vocab_size)
    raise ValueError(f"build_model: kind must be 'gru' or 'transformer', got {kind!r}")


def _windows(ids, starts, seq_len):
    """Inputs (N, T) and next-character targets (N, T) for windows beginning at ``starts``."""
    idx = starts[:, None] + np.arange(seq_len)[None, :]                       # (N, T)
    return ids[idx], ids[idx + 1]


def _bits(model, params, x, y, batch_size=64):
    """Mean cross-entropy in bits per character over all the windows x, y (N, T), ``batch_size`` windows at a time."""
    total = 0.0
    for i in range(0, len(x), batch_size):
        logits = axon.apply(model, params, x[i:i + batch_size])[0]              # (n, T, V)
        xent = kernels.softmax_cross_entropy(logits.reshape(-1, logits.shape[-1]), y[i:i + batch_size].reshape(-1))
        total += float(xent.sum())
    return total / y.size / math.log(2)


def _unigram_bits(train, val, vocab_size):
    """Cross-entropy of the validation text under the training text's character frequencies (add-one)."""
    p = (np.bincount(train, minlength=vocab_size) + 1) / (len(train) + vocab_size)
    return float(-np.log2(p[val]).mean())


def sample(model, params, seed_ids, vocab, n, temperature=0.8, key=0):
    """``n`` characters, each drawn from the model given the ``seq_len`` before it."""
    rng = np.random.default_rng(key)
    window = list(seed_ids)
    out = []
    for _ in range(n):
        logits = axon.predict(model, params, np.array([window]))[0, -1].astype(np.float64)   # (V,)
        p = np.exp((logits - logits.max()) / temperature)
        c = int(rng.choice(len(vocab), p=p / p.sum()))
        out.append(vocab[c])
        window = window[1:] + [c]
    return "".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description="A character-level GRU or transformer on Hamlet.")
    ap.add_argument("--model", choices=("gru", "transformer"), default="gru")
    ap.add_argument("--steps", type=int, default=None, help="default 600 (GRU), 300 (transformer)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256, help="GRU units")
    ap.add_argument("--width", type=int, default=128, help="transformer width")
    ap.add_argument("--lr", type=float, default=None, help="default 3e-3 (GRU), 1e-3 (transformer)")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--sample", type=int, default=400, help="characters to sample at the end")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a tiny run: a few steps of a small model")
    ap.add_argument("--verbose", type=int, default=1)
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    lr = args.lr if args.lr is not None else (3e-3 if args.model == "gru" else 1e-3)
    if args.steps is None:
        args.steps = 600 if args.model == "gru" else 300
    say = print if args.verbose else (lambda *a, **k: None)

    train, val, vocab = load_text()
    T = args.seq_len
    model = build_model(args.model, len(vocab), T, args.hidden, args.width)
    params = axon.init(model, seed=args.seed)
    say(axon.summary(model))
    baseline = _unigram_bits(train, val, len(vocab))
    say(f"{len(train):,} training and {len(val):,} validation characters, {len(vocab)} distinct; "
        f"unigram baseline: {baseline:.3f} bits per character")

    val_x, val_y = _windows(val, np.arange(0, len(val) - T, T), T)            # the held-out text, window by window
    say(f"validation: the {val_y.size:,} next characters of {len(val_x)} windows of {T}")
    opt = chain(clip_by_global_norm(1.0), axon.optimizers.adam(lr))
    opt_state = opt.init(params)

    def loss_fn(p, x, y):
        logits = axon.apply(model, p, x, training=True)[0]                       # (B, T, V)
        return kernels.softmax_cross_entropy(logits.reshape(-1, len(vocab)), y.reshape(-1)).mean()

    grad_fn = value_and_grad(loss_fn)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    val_bits = _bits(model, params, val_x, val_y)
    bar = tqdm(range(1, args.steps + 1), disable=not args.verbose, desc=args.model, unit="step")
    for step in bar:
        x, y = _windows(train, rng.integers(0, len(train) - T - 1, args.batch_size), T)
        loss, grads = grad_fn(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = apply_updates(params, updates)
        if step % args.eval_every == 0 or step == args.steps:
            val_bits = _bits(model, params, val_x, val_y)
        bar.set_postfix(train_bits=f"{float(loss) / math.log(2):.3f}", val_bits=f"{val_bits:.3f}")
    bar.close()
    seconds = time.perf_counter() - t0
    say(f"validation: {val_bits:.3f} bits per character over {val_y.size:,} held-out characters (unigram baseline "
        f"{baseline:.3f}) after {args.steps} steps, {seconds:.0f} s")
    text = sample(model, params, val[:T], vocab, args.sample, key=args.seed)
    say("\n--- sampled ---\n" + "".join(vocab[i] for i in val[:T]) + text + "\n---------------")
    return {"baseline_bits": baseline, "val_bits": val_bits, "sample": text, "params": params, "seconds": seconds}


if __name__ == "__main__":
    main()
