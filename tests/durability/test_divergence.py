"""A diverged run: one line naming the epoch and batch, and no frame or file of the broken model kept."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, gif_frames, run_program

TINY = ["--hidden", "64", "--batch-size", "64", "--iw-samples", "5"]  # the end-of-run evaluation is not under test here


def train_cmd(*args):
    return [sys.executable, os.path.join(ROOT, "train.py"), *args]


def run_train(*args, timeout=300):
    return subprocess.run(train_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.backend_independent
@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_diverged_run_keeps_no_frame_of_the_broken_model_and_prints_no_numpy_warning(tmp_path, finished_run):
    run = tmp_path / "nan"
    shutil.copytree(finished_run, run)
    # The optimizer's saved learning rate (the checkpoint's, which --resume restores) made huge: the weights
    # of epoch 2 stay good and the first step of epoch 3 breaks them, on any backend.
    state = json.load(open(run / "checkpoint" / "state.json"))
    path = run / "checkpoint" / state["weights"]
    arrays = dict(np.load(path))
    # Adam's learning rate; the optimizer's name is adam, adam_1, ... by how many a process made before
    (rate,) = [name for name in arrays if "/optimizer/" in name and name.endswith("/learning_rate")]
    assert arrays[rate] == np.float32(1e-3)
    arrays[rate] = np.float32(1e30)
    np.savez(path, **arrays)
    result = run_program("train.py", "--resume", run, "--epochs", "4")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()  # one line: no numpy "invalid value" warning before it
    assert line.startswith("error: the loss became NaN or infinite in epoch 3, batch ")
    assert "kept the checkpoint and plots of epoch 2" in line
    assert json.load(open(run / "metrics.json"))["epochs"] == 2
    assert gif_frames(run / "progress.gif") == 2  # the frames of epochs 1 and 2, not the broken one


@pytest.mark.slow
@pytest.mark.multiprocess
def test_divergence_stops_with_one_line_naming_epoch_and_batch(tmp_path, small_npz):
    result = run_train("--data", small_npz, "--epochs", "3", "--lr", "1e30", *TINY,
                       "--out", str(tmp_path), "--run-name", "nan")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the loss became NaN or infinite in epoch 1, batch ")
    assert "try a lower --lr" in last
    assert not os.path.exists(tmp_path / "nan" / "model.keras")
    assert not os.path.exists(tmp_path / "nan" / "checkpoint" / "state.json")  # nothing broken was saved
