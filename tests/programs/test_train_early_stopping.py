"""train.py --early-stopping end to end: a run that stops early evaluates, saves and draws its best epoch's model,
is complete, resumes to exactly the run that was not stopped, and writes its outputs after a kill between stopping
and them (the rule itself is tested in tests/unit/test_early_stopping.py). On every backend the suite runs on."""
import json

import numpy as np
import pytest
from conftest import checkpoint_arrays, read_history, run_main

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)

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
    assert (f"early stopping: it stopped early after epoch {len(history)}: the validation bound had not improved for "
            f"1 epoch since its best, epoch {best}, whose model it keeps") in straight.stdout
    again = run_main("train", "--resume", tmp_path / "a")
    assert again.returncode == 0 and "is complete" in again.stdout and "stopped early" in again.stdout
    # compare.py shows the evaluated numbers of the chosen epoch (eval.json's epoch is not the last trained one).
    compared = run_main("compare", tmp_path / "a", "--out", tmp_path / "cmp")
    row = compared.stdout.splitlines()[2].split(" | ")
    assert compared.returncode == 0 and f"{len(history)} (best {best}, early stopping)" in row
    assert f"{evaluation['nll_iw']:.2f}" in row and str(evaluation["active_units"]) in row
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


@pytest.mark.slow
def test_a_run_killed_after_stopping_early_writes_its_outputs_and_trains_nothing_more(tmp_path, small_npz):
    """Stopped early, then killed before its final outputs (a SIGKILL or Ctrl-C in the final save leaves the
    checkpoint and history only): --resume writes the outputs of the run the history decides, training nothing."""
    import os
    import shutil

    straight = run_main("train", "--data", small_npz, *FLAGS, "--epochs", "25", "--out", tmp_path, "--run-name", "a")
    assert straight.returncode == 0, straight.stderr[-2000:]
    history = read_history(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "killed")
    for name in os.listdir(tmp_path / "killed"):
        if name not in ("config.json", "history.csv", "checkpoint", ".lock"):
            os.remove(tmp_path / "killed" / name)
    evaluated = run_main("evaluate", tmp_path / "killed", "--no-sample-quality")  # nothing left to train: says so
    assert evaluated.returncode == 1 and f"all {len(history)} epochs are trained but the final outputs were not " \
        "written" in evaluated.stderr
    resumed = run_main("train", "--resume", tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Epoch" not in resumed.stdout and "it stopped early after epoch" in resumed.stdout
    assert read_history(tmp_path / "killed") == history
    assert json.load(open(tmp_path / "killed" / "eval.json")) == {
        **json.load(open(tmp_path / "a" / "eval.json")), "seconds": json.load(open(tmp_path / "killed" / "eval.json"))[
            "seconds"], "seconds_by_part": json.load(open(tmp_path / "killed" / "eval.json"))["seconds_by_part"]}


@pytest.mark.slow
def test_early_stopping_that_never_judged_an_epoch_says_so_and_writes_strict_json(tmp_path, small_npz):
    """A KL warm-up longer than the run: no epoch is judged; eval.json says so with nulls, never Infinity."""
    result = run_main("train", "--data", small_npz, *FLAGS, "--kl-warmup", "5", "--epochs", "2", "--out", tmp_path,
                      "--run-name", "w")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "early stopping never judged an epoch" in result.stdout
    for name in ("eval.json", "metrics.json", "config.json", "checkpoint/state.json"):
        json.loads(open(tmp_path / "w" / name).read(), parse_constant=lambda word: pytest.fail(f"{name}: {word}"))
    chosen = json.load(open(tmp_path / "w" / "eval.json"))["early_stopping"]
    assert chosen["chosen_epoch"] is None and chosen["best_validation_loss"] is None and not chosen["stopped_early"]
    assert "never engaged: no epoch judged of 2 epochs trained" in open(tmp_path / "w" / "report.html").read()
