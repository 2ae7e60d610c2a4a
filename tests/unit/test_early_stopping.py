"""mnist_vae/early_stopping.py: the best epoch and the stop, from the history; a run that stops early evaluates,
saves and draws its best epoch's model, is complete, and resumes to exactly the run that was not stopped."""
import json

import numpy as np
import pytest
from conftest import checkpoint_arrays, read_history, run_main

from mnist_vae import early_stopping


def rows(*losses):
    return [{"epoch": i + 1, "validation_loss": v} for i, v in enumerate(losses)]


@pytest.mark.backend_independent
def test_the_best_epoch_and_the_stop_come_from_the_history():
    assert early_stopping.progress(rows(5, 4, 4.5, 4.2), patience=2) == (4, 2, True)
    assert early_stopping.progress(rows(5, 4, 4.5), patience=2) == (4, 2, False)
    assert early_stopping.progress(rows(5, 4, 4.0, 4.0), patience=3)[:2] == (4, 2)  # a tie is no improvement
    assert early_stopping.progress(rows(5, 4, 3), patience=0)[2] is False  # 0: off
    # the warm-up's epochs are not judged: epoch 2's low loss, under a KL weight below 1, does not count
    assert early_stopping.progress(rows(9, 1, 6, 7, 8), patience=2, warmup=2) == (6, 3, True)
    assert early_stopping.progress(rows(9, 1), patience=1, warmup=2) == (np.inf, None, False)
    summary = early_stopping.summary(rows(5, 4, 4.5, 4.2), 2)
    assert summary == {"patience": 2, "chosen_epoch": 2, "best_validation_loss": 4, "trained_epochs": 4,
                       "stopped_early": True}


FLAGS = ["--hidden", "32", "--batch-size", "32", "--iw-samples", "5", "--validation", "60", "--early-stopping", "1",
         "--lr", "0.01", "--deterministic", "--no-sample-quality"]


@pytest.mark.slow
def test_a_run_stops_early_evaluates_its_best_epoch_and_resumes_exactly(tmp_path, small_npz):
    straight = run_main("train", "--data", small_npz, *FLAGS, "--epochs", "25", "--out", tmp_path, "--run-name", "a")
    assert straight.returncode == 0, straight.stderr[-2000:]
    history = read_history(tmp_path / "a")
    losses = [row["validation_loss"] for row in history]
    best = int(np.argmin(losses)) + 1
    evaluation = json.load(open(tmp_path / "a" / "eval.json"))
    assert evaluation["early_stopping"] == {"patience": 1, "chosen_epoch": best, "best_validation_loss": min(losses),
                                            "trained_epochs": len(history), "stopped_early": True}
    assert len(history) == best + 1 < 25  # one epoch without improvement, then it stopped
    assert evaluation["epoch"] == best  # model.keras and the numbers are the best epoch's
    assert f"epoch {best} chosen" in open(tmp_path / "a" / "report.html").read()
    again = run_main("train", "--resume", tmp_path / "a")
    assert again.returncode == 0 and "is complete" in again.stdout and "stopped early" in again.stdout
    evaluated = run_main("evaluate", tmp_path / "a", "--iw-samples", "5", "--no-sample-quality")
    assert evaluated.returncode == 0, evaluated.stderr  # no --older-model needed for the chosen epoch
    # Stopped after two epochs, then resumed: the same history, the same choice, the same weights.
    first = run_main("train", "--data", small_npz, *FLAGS, "--epochs", "2", "--out", tmp_path, "--run-name", "b")
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = run_main("train", "--resume", tmp_path / "b", "--epochs", "25")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read_history(tmp_path / "b") == history
    assert json.load(open(tmp_path / "b" / "eval.json"))["early_stopping"] == evaluation["early_stopping"]
    for folder in ("a", "b"):  # the checkpoint keeps the last epoch's and the best epoch's weights
        names = sorted(p.name for p in (tmp_path / folder / "checkpoint").iterdir() if p.suffix == ".npz")
        assert names == [f"best-epoch-{best:04d}.variables.npz", f"epoch-{len(history):04d}.variables.npz",
                         "frames.npz"]
    for (name, a), b in zip(sorted(checkpoint_arrays(tmp_path / "a").items()),
                            (b for _, b in sorted(checkpoint_arrays(tmp_path / "b").items()))):
        np.testing.assert_array_equal(a, b, err_msg=name)
