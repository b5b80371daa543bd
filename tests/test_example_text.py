"""`python -m axon.examples.text`, in its tiny quick mode (the full run takes minutes)."""
import pytest

from axon.examples import text as example


@pytest.mark.parametrize("model", ["gru", "transformer"])
def test_quick_run_learns_and_samples(model, capsys):
    results = example.main(["--quick", "--model", model])
    out = capsys.readouterr().out
    assert "unigram baseline" in out and "bits per character" in out and "--- sampled ---" in out
    assert 4.0 < results["baseline_bits"] < 5.5                 # 65 characters; uniform would be 6.02
    # 60 steps already beat the unigram baseline on the whole held-out text (measured: GRU 4.49, transformer
    # 4.41 against 4.84; seeds 1 and 2 within 0.06 of that), so a model that learns nothing fails here
    assert results["val_bits"] < results["baseline_bits"] - 0.15
    assert len(results["sample"]) == example.QUICK["sample"]
    assert set(results["sample"]) <= set(example.load_text()[2])


def test_the_text_ships_with_the_package():
    train, val, vocab = example.load_text()
    assert len(train) + len(val) > 150_000 and len(vocab) == 65
    assert "".join(vocab[i] for i in train[:6]) == "Hamlet"


def test_bad_flags():
    with pytest.raises(SystemExit):
        example.main(["--model", "lstm"])
