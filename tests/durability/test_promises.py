"""The "nothing is lost" table, probed as a hostile user would: files that are always whole, signals during
the final save, diverged runs, moved data, gzip bombs, bad settings, older models, full disks, odd names."""
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from conftest import ROOT, TINY, gif_frames, run_main, run_program

pytestmark = pytest.mark.backend_independent  # files, signals and messages: CI runs them on TensorFlow


def assert_whole_images(folder):
    """Every PNG and GIF in folder decodes to its end, and no temporary file is left beside them."""
    from PIL import Image

    names = os.listdir(folder)
    assert not [n for n in names if ".tmp" in n], names
    for name in names:
        if name.endswith((".png", ".gif")):
            with Image.open(os.path.join(folder, name)) as image:
                for frame in range(getattr(image, "n_frames", 1)):
                    image.seek(frame)
                    image.load()


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_long_evaluation_into_a_log_says_when_it_ends_and_ctrl_c_keeps_every_file(tmp_path, finished_run):
    """An extra zero typed (k = 20,000,000): into a pipe, one line from the first seconds says how long it will
    take and how to shorten it, then plain progress lines follow; Ctrl-C is one line and changes nothing."""
    run = str(tmp_path / "run")
    shutil.copytree(finished_run, run)
    before = {name: os.stat(os.path.join(run, name)).st_mtime_ns for name in ("eval.json", "report.html")}
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "evaluate.py"), run, "--iw-samples", "20000000"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, deadline = [], time.time() + 120
    while time.time() < deadline and not any(" so far, about " in line for line in lines):
        lines.append(proc.stdout.readline())
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    announced = [line for line in lines if "at this pace" in line]
    assert len(announced) == 1 and "--iw-samples 1000 would take about" in announced[0], lines
    assert any(line.startswith("importance-weighted evaluation, k = 20,000,000 samples per image: 0% of 80 images, ")
               and " left" in line for line in lines), lines
    assert proc.returncode == 130 and stderr.strip().splitlines() == [
        "interrupted by SIGINT; eval.json and the figures are each either as before or complete"], stderr[-2000:]
    assert before == {name: os.stat(os.path.join(run, name)).st_mtime_ns for name in before}


@pytest.mark.slow
@pytest.mark.multiprocess
def test_ctrl_c_while_evaluate_writes_figures_is_one_line_and_leaves_whole_files(tmp_path, finished_run):
    run = str(tmp_path / "run")
    shutil.copytree(finished_run, run)
    for delay in (0.0, 0.3):  # after the evaluation is written: while the figures are being drawn
        before = os.stat(os.path.join(run, "eval.json")).st_mtime_ns
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "evaluate.py"), run, "--iw-samples", "3"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None and os.stat(os.path.join(run, "eval.json")).st_mtime_ns == before:
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode in (0, 130) and "Traceback" not in stderr, stderr[-2000:]
        if proc.returncode == 130:
            assert stderr.strip().splitlines() == [
                "interrupted by SIGINT; eval.json and the figures are each either as before or complete"]
        assert_whole_images(run)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_signals_during_the_final_save_are_ignored_and_it_completes(tmp_path, small_npz):
    run = str(tmp_path / "stopped")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), "--data", small_npz, "--epochs", "400",
                             *TINY, "--out", str(tmp_path), "--run-name", "stopped"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = os.path.join(run, "checkpoint", "state.json")
    while proc.poll() is None and not os.path.exists(state):
        time.sleep(0.02)
    # SIGTERM, then SIGTERM and SIGINT again and again, until the program has finished saving.
    i = 0
    while proc.poll() is None:
        proc.send_signal(signal.SIGTERM if i == 0 or i % 2 else signal.SIGINT)
        i += 1
        time.sleep(0.03)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr[-2000:]
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert metrics["partial"] is True and metrics["epochs"] >= 1
    assert i > 3  # the later signals did arrive
    assert_whole_images(run)
    assert gif_frames(os.path.join(run, "progress.gif")) == metrics["epochs"]


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
def test_data_paths_are_stored_absolute_and_evaluate_takes_moved_data(tmp_path, small_npz):
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(small_npz, folder / "digits.npz")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--data", "digits.npz", "--epochs", "1",
                             *TINY, "--out", str(tmp_path), "--run-name", "rel"],
                            cwd=folder, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    run = str(tmp_path / "rel")
    assert json.load(open(os.path.join(run, "config.json")))["data"] == str(folder / "digits.npz")
    assert run_main("evaluate", run, "--iw-samples", "2").returncode == 0  # from another folder
    moved = tmp_path / "moved.npz"
    shutil.move(folder / "digits.npz", moved)
    result = run_main("evaluate", run, "--iw-samples", "2")
    assert result.returncode == 1 and result.stderr.strip().endswith("(moved? pass --data PATH)")
    result = run_main("evaluate", run, "--iw-samples", "2", "--data", moved)
    assert result.returncode == 0, result.stderr


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    from mnist_vae import data

    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (10, 28, 28))
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    with open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(squeeze.compress(header + bytes(10 * 784)))
        zeros = bytes(1 << 24)
        for _ in range(64):  # a 1 GB tail that compresses to about 1 MB
            f.write(squeeze.compress(zeros))
        f.write(squeeze.flush())
    data.write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.zeros(10, np.uint8))
    assert os.path.getsize(tmp_path / "t10k-images-idx3-ubyte.gz") < 2 << 20
    tracemalloc.start()
    with pytest.raises(data.DataError, match="has trailing bytes"):
        data.load_idx_folder(str(tmp_path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 32 << 20, peak  # it stopped reading where the header said the data ends


@pytest.mark.parametrize("shape, message", [((0, 28, 28), "declares an empty array (0, 28, 28)"),
                                            ((2**31, 28, 28), "more than this machine's memory can hold")])
def test_idx_headers_declaring_empty_or_impossible_arrays_are_one_line(tmp_path, shape, message):
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in shape)
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(header)
    from mnist_vae import data

    data.write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.zeros(1, np.uint8))
    result = run_main("train", "--data", tmp_path, "--out", tmp_path / "out")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and message in result.stderr


@pytest.mark.slow
def test_flags_and_settings_out_of_range_are_one_line(tmp_path, small_npz, finished_run):
    out = tmp_path / "out"
    for flags, code, message in (
            (["--seed", str(2**32)], 2, "--seed: must be >= 0 and < 4294967296"),
            (["--run-name", "../escape"], 2, "--run-name: must be a folder name without '/'"),
            (["--run-name", str(tmp_path / "abs")], 2, "--run-name: must be a folder name without '/'"),
            (["--hidden", "100000000"], 1, "--hidden 100000000 --latent-dim 2: the model would have"),
            (["--arch", "conv", "--latent-dim", "10000000"], 1, "--arch conv --latent-dim 10000000: the model would"),
            (["--epochs", "100000000000000000000"], 2, "--epochs: must be >= 1 and < 1000001"),
            (["--lr-schedule", "staged", "--stages", "100"], 2, "--stages: must be >= 1 and < 14"),
            (["--stages", "10000"], 2, "--stages: must be >= 1 and < 14")):
        result = run_main("train", "--data", small_npz, "--out", out, *flags)
        assert result.returncode == code and message in result.stderr.splitlines()[-1], (flags, result.stderr)
        assert "Traceback" not in result.stderr and (code == 2 or result.stderr.count("\n") == 1)
        assert not os.path.exists(out) or os.listdir(out) == []  # no run folder was made or left behind
    assert not os.path.exists(tmp_path / "escape") and not os.path.exists(tmp_path / "abs")
    for key, value in (("binarize", "weird"), ("latent_dim", "two"), ("lr", -1), ("preset", "evil")):
        run = tmp_path / f"bad-{key}"
        shutil.copytree(finished_run, run)
        config = json.load(open(run / "config.json"))
        json.dump({**config, key: value}, open(run / "config.json", "w"))
        before = {name: os.path.getmtime(run / name) for name in ("eval.json", "report.html")}
        for program, args in (("train", ["--resume", run, "--epochs", "3"]), ("evaluate", [run]),
                              ("compare", [run, "--out", tmp_path / "cmp"])):
            result = run_main(program, *args)
            assert result.returncode == 1 and result.stderr.count("\n") == 1, (key, program, result.stderr)
            assert str(run / "config.json") in result.stderr and repr(value) in result.stderr
        assert before == {name: os.path.getmtime(run / name) for name in before}  # nothing was written


@pytest.mark.slow
def test_evaluate_refuses_a_model_older_than_the_checkpoint_unless_asked(tmp_path, finished_run):
    run = tmp_path / "longer"
    shutil.copytree(finished_run, run)
    assert run_main("train", "--resume", run, "--epochs", "3").returncode == 0
    # The state a --resume killed after epoch 3's checkpoint leaves: the model.keras of epoch 2.
    shutil.copy(os.path.join(finished_run, "model.keras"), run / "model.keras")
    result = run_main("evaluate", run, "--iw-samples", "2")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "model.keras is the model of epoch 2, but the run's checkpoint has trained 3 epochs" in result.stderr
    result = run_main("evaluate", run, "--iw-samples", "2", "--older-model")
    assert result.returncode == 0 and json.load(open(run / "eval.json"))["epoch"] == 2


@pytest.mark.slow
def test_black_and_white_pixels_stored_as_booleans_are_read_as_0_and_255(tmp_path, digits):
    from mnist_vae import data

    x, y = digits
    path = str(tmp_path / "bool.npz")
    np.savez(path, x_train=x[:300, ..., 0] > 127, y_train=y[:300], x_test=x[-60:, ..., 0] > 127, y_test=y[-60:])
    splits = data.load(path)
    np.testing.assert_array_equal(splits.x_train[..., 0], np.where(x[:300, ..., 0] > 127, 255, 0))
    assert "pixels are only 0 and 1: read as black and white (0 and 255)" in splits.note
    result = run_main("train", "--data", path, "--epochs", "1", *TINY, "--out", tmp_path, "--run-name", "bw")
    assert result.returncode == 0 and "read as black and white" in result.stdout


@pytest.mark.slow
def test_metrics_say_which_kl_weight_their_loss_uses_during_a_warm_up(tmp_path, small_npz):
    result = run_main("train", "--data", small_npz, "--epochs", "2", "--kl-warmup", "10", *TINY, "--out", tmp_path,
                      "--run-name", "warm")
    assert result.returncode == 0, result.stderr
    metrics = json.load(open(tmp_path / "warm" / "metrics.json"))
    assert metrics["kl_weight_last_epoch"] == pytest.approx(0.1) and metrics["kl_weight_in_loss"] == 1.0
    assert metrics["loss"] == pytest.approx(metrics["reconstruction_loss"] + metrics["kl_loss"], rel=1e-5)
    assert "KL at weight 1" in metrics["loss_is"]
