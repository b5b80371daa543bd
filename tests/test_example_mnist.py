"""`python -m axon.examples.mnist`, end to end on small subsets (the full runs are benchmarks/mnist.py)."""
import importlib.util
import os
import subprocess
import sys

import pytest

from axon.examples import mnist as example
from axon.training import load_checkpoint


def test_mlp_learns_on_a_subset(tmp_path, capsys):
    ckpt, png = tmp_path / "mlp.safetensors", tmp_path / "curves.png"
    plotting = importlib.util.find_spec("matplotlib") is not None      # the optional 'plot' extra
    results = example.main(["--limit", "2000", "--epochs", "2", "--save", str(ckpt)]
                           + (["--plot", str(png)] if plotting else []))
    out = capsys.readouterr().out
    assert "dense_0" in out and "Test accuracy:" in out          # the summary table, then the result
    assert results["test_accuracy"] > 0.75                      # chance is 0.10
    state = results["state"]
    assert state.epoch == 2 and state.step == 2 * 15             # 1800 training images, batches of 128
    assert set(state.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert load_checkpoint(ckpt).step == state.step
    assert png.read_bytes()[:4] == b"\x89PNG" if plotting else not png.exists()
    # resuming the saved run for a third epoch
    resumed = example.main(["--limit", "2000", "--epochs", "3", "--resume", str(ckpt), "--verbose", "0"])
    assert resumed["state"].epoch == 3 and resumed["state"].step == 3 * 15


def test_cnn_learns_on_a_subset():
    results = example.main(["--model", "cnn", "--limit", "600", "--epochs", "1", "--batch-size", "16",
                            "--verbose", "0"])
    assert results["test_accuracy"] > 0.4                       # about 0.7 after these 34 steps; chance 0.1


def test_bad_flags():
    with pytest.raises(SystemExit):
        example.main(["--model", "resnet"])
    with pytest.raises(SystemExit):
        example.main(["--limit", "5"])
    with pytest.raises(ValueError, match="kind must be 'mlp' or 'cnn'"):
        example.build_model("rnn")


def test_runs_as_a_module():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "axon.examples.mnist", "--help"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--model {mlp,cnn}" in done.stdout and "--save PATH" in done.stdout


def test_random_shift_moves_each_image_and_fills_with_zeros():
    import numpy as np
    x = np.random.default_rng(0).random((4, 784)).astype(np.float32)
    images = x.reshape(4, 28, 28)
    offsets = np.array([[1, -2, 0, 2], [-2, 0, 0, 1]])               # (dy, dx) of each of the 4 images

    class Fixed:                                                 # a Generator stand-in drawing the offsets
        def integers(self, lo, hi, size):
            assert (lo, hi, size) == (-2, 3, (2, 4))
            return offsets
    out = example.random_shift(x, Fixed(), max_shift=2)
    assert out.shape == x.shape and out.dtype == np.float32
    moved = out.reshape(4, 28, 28)
    for k, (dy, dx) in enumerate(offsets.T):
        for i, j in [(5, 5), (20, 13), (27, 27), (0, 0), (1, 26)]:
            src = (i - dy, j - dx)
            want = images[k, src[0], src[1]] if 0 <= src[0] < 28 and 0 <= src[1] < 28 else 0.0
            assert moved[k, i, j] == want
    cnn_shaped = example.random_shift(x.reshape(4, 28, 28, 1), np.random.default_rng(1))
    assert cnn_shaped.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(example.random_shift(x, np.random.default_rng(1), max_shift=0), x)
