"""Stopping and resuming: the same seed gives the same history, a run stopped by a signal or SIGKILL resumes
exactly, --resume refuses what it cannot continue and never shortens a run, TensorBoard's log holds exactly the
epochs of the history."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import (
    ROOT,  # noqa: E402  (the repository root)
    checkpoint_arrays,
    read_history,
    run_main,
    wait_for_epoch,
    write_npz,
)

from mnist_vae.rundir import read_state

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

TINY = ["--hidden", "64", "--batch-size", "64", "--iw-samples", "5"]  # the end-of-run evaluation is not under test here

# A model and data size whose epoch lasts about a second, so that a signal lands mid-training: the conv model
# on 1,500 images; on JAX, whose CPU convolutions take about 17 s to compile in every process, a wide dense
# model on 3,000 (train.py runs on the suite's backend: it inherits KERAS_BACKEND).
SLOW_FLAGS, SLOW_IMAGES = {"jax": (["--arch", "dense", "--hidden", "2048"], 3000)}.get(
    os.environ.get("KERAS_BACKEND", "tensorflow"), (["--arch", "conv"], 1500))


def train_cmd(*args):
    return [sys.executable, os.path.join(ROOT, "train.py"), *args]


def run_train(*args, timeout=300):
    return subprocess.run(train_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


history = read_history


def assert_same_run(a, b):
    ha, hb = history(a), history(b)
    assert len(ha) == len(hb)
    for ra, rb in zip(ha, hb):
        for key in ra:
            assert ra[key] == pytest.approx(rb[key], rel=1e-5), (ra["epoch"], key)
    wa, wb = checkpoint_arrays(a), checkpoint_arrays(b)
    assert len(wa) == len(wb) and any("/optimizer/" in k for k in wa) and any("seed_generator" in k for k in wa)
    for key_a, key_b in zip(sorted(wa), sorted(wb)):  # by order: layer names may differ between processes
        np.testing.assert_allclose(wa[key_a], wb[key_b], rtol=1e-5, atol=1e-7, err_msg=key_a)


@pytest.fixture(scope="module")
def slow_npz(tmp_path_factory, digits):
    """Enough real digits that one epoch of SLOW_FLAGS' model lasts about a second."""
    return write_npz(tmp_path_factory.mktemp("data"), "slow.npz", digits, SLOW_IMAGES, 200)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, slow_npz):
    out = str(tmp_path_factory.mktemp("ref"))
    args = ["--data", slow_npz, "--epochs", "3", "--seed", "7", "--deterministic", *TINY, *SLOW_FLAGS]
    result = run_train(*args, "--out", out, "--run-name", "ref")
    assert result.returncode == 0, result.stderr[-2000:]
    return os.path.join(out, "ref"), args


def tensorboard_steps(run_dir):
    """{split: [(step, epoch_loss)]} of a run's TensorBoard logs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    steps = {}
    for split in ("train", "validation"):
        events = EventAccumulator(os.path.join(run_dir, "tensorboard", split), size_guidance={"tensors": 0}).Reload()
        steps[split] = [(v.step, float(make_ndarray(v.tensor_proto))) for v in events.Tensors("epoch_loss")]
    return steps


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.backend_independent  # the resume tests compare runs exactly on every backend
def test_same_seed_gives_identical_history(tmp_path, reference_run):
    ref_dir, args = reference_run
    result = run_train(*args, "--out", str(tmp_path), "--run-name", "again")
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_run(ref_dir, str(tmp_path / "again"))


@pytest.mark.default_backend_only  # on JAX the signal test's stop-and-resume takes the same path
def test_resume_after_a_finished_shorter_run_is_exact(tmp_path, reference_run):
    ref_dir, args = reference_run
    short = [a if a != "3" else "1" for a in args]  # --epochs 1
    assert run_train(*short, "--out", str(tmp_path), "--run-name", "r").returncode == 0
    first = read_state(str(tmp_path / "r"))["training_seconds"]
    result = run_train("--resume", str(tmp_path / "r"), "--epochs", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming" in result.stdout
    assert_same_run(ref_dir, str(tmp_path / "r"))
    assert read_state(str(tmp_path / "r"))["training_seconds"] > first > 0  # the first session's time carried on
    assert "; training over every session " in result.stdout


@pytest.mark.parametrize("signum, code", [
    (signal.SIGINT, 130),
    # The same path with another signal number: once, on TensorFlow, is enough.
    pytest.param(signal.SIGTERM, 143, marks=pytest.mark.backend_independent)])
def test_signal_stops_cleanly_and_resume_is_exact(tmp_path, reference_run, signum, code):
    ref_dir, args = reference_run
    run_dir = str(tmp_path / "s")
    proc = subprocess.Popen(train_cmd(*args, "--out", str(tmp_path), "--run-name", "s"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_epoch(run_dir, 1, proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-2000:]
    assert "Traceback" not in stderr
    assert f"python train.py --resume {run_dir}" in stderr.strip().splitlines()[-1]
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    done = len(history(run_dir))
    assert metrics["partial"] is True and metrics["epochs"] == done and done in (1, 2)
    assert metrics["loss"] == history(run_dir)[-1]["val_loss"]
    for plot in ("loss.png", "reconstructions.png", "samples.png", "latent_scatter.png", "explorer.html"):
        assert os.path.getsize(os.path.join(run_dir, plot)) > 0
    assert not os.path.exists(os.path.join(run_dir, "model.keras"))  # only a finished run has one

    result = run_train("--resume", run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_run(ref_dir, run_dir)
    assert json.load(open(os.path.join(run_dir, "metrics.json")))["partial"] is False


@pytest.mark.backend_independent  # atomic files; exact resume is tested on every backend above
def test_sigkill_leaves_only_complete_files_and_resume_is_exact(tmp_path, reference_run):
    ref_dir, args = reference_run
    run_dir = str(tmp_path / "k")
    proc = subprocess.Popen(train_cmd(*args, "--out", str(tmp_path), "--run-name", "k"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_epoch(run_dir, 1, proc)
    time.sleep(0.3)
    proc.kill()
    proc.wait(timeout=60)
    json.load(open(os.path.join(run_dir, "config.json")))
    state = json.load(open(os.path.join(run_dir, "checkpoint", "state.json")))
    assert len(history(run_dir)) >= state["epoch"]  # history.csv is rewritten whole, never half a line
    result = run_train("--resume", run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_run(ref_dir, run_dir)
    assert not [n for n in os.listdir(run_dir) if ".tmp" in n]


@pytest.mark.backend_independent  # files and messages
def test_resume_refuses_bad_run_folders_with_one_line(tmp_path, reference_run):
    ref_dir, _ = reference_run
    cases = []
    cases.append((str(tmp_path), "not a run folder (no config.json)"))
    cases.append((str(tmp_path / "nowhere"), "no such run folder"))
    future = tmp_path / "future"
    future.mkdir()
    (future / "config.json").write_text(json.dumps({"format": 99}))
    cases.append((str(future), "written by an unknown version of this program (format 99"))
    garbled = tmp_path / "garbled"
    garbled.mkdir()
    (garbled / "config.json").write_text("{not json")
    cases.append((str(garbled), "unreadable"))
    for run_dir, message in cases:
        result = run_main("train", "--resume", run_dir)  # refused before the backend starts: in this process
        assert result.returncode == 1 and "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert message in line, line


@pytest.mark.backend_independent  # files and messages
def test_resume_refuses_contradicting_flags_and_damaged_checkpoints(tmp_path, reference_run):
    import shutil

    ref_dir, _ = reference_run
    copy = str(tmp_path / "copy")
    shutil.copytree(ref_dir, copy)
    result = run_train("--resume", copy, "--epochs", "4", "--lr", "0.5", timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: --lr 0.5 contradicts the saved config")
    mtimes = lambda: {name: os.path.getmtime(os.path.join(copy, name)) for name in os.listdir(copy)  # noqa: E731
                      if name != ".lock"}  # the lock file holds the pid of the latest process
    before = mtimes()
    result = run_train("--resume", copy, timeout=120)  # --epochs not raised: complete, nothing to do
    assert result.returncode == 0 and "is complete (3 epochs" in result.stdout and not result.stderr
    assert mtimes() == before
    state = json.load(open(os.path.join(copy, "checkpoint", "state.json")))
    weights = os.path.join(copy, "checkpoint", state["weights"])
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)
    result = run_train("--resume", copy, "--epochs", "4", timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot load checkpoint" in result.stderr.strip().splitlines()[-1]


@pytest.mark.backend_independent  # TensorBoard's logs are written the same way on every backend
def test_tensorboard_holds_exactly_the_epochs_of_history_across_stops_and_resumes(tmp_path, slow_npz):
    args = ["--data", slow_npz, "--epochs", "4", *TINY, *SLOW_FLAGS, "--tensorboard"]
    run_dir = str(tmp_path / "tb")
    proc = subprocess.Popen(train_cmd(*args, "--out", str(tmp_path), "--run-name", "tb"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_epoch(run_dir, 2, proc)
    proc.send_signal(signal.SIGINT)  # in epoch 3, which is thrown away
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    kept = len(history(run_dir))
    assert f"was stopped part-way: the numbers printed for it are discarded; {kept} completed epochs" in stdout
    for split, prefix in (("train", ""), ("validation", "val_")):
        logged = tensorboard_steps(run_dir)[split]
        assert [step for step, _ in logged] == list(range(kept)), split  # no step of the discarded epoch
        np.testing.assert_allclose([v for _, v in logged], [r[prefix + "loss"] for r in history(run_dir)],
                                   rtol=1e-6)
    result = run_train("--resume", run_dir, "--tensorboard")
    assert result.returncode == 0, result.stderr[-2000:]
    for split, prefix in (("train", ""), ("validation", "val_")):
        logged = tensorboard_steps(run_dir)[split]
        assert [step for step, _ in logged] == [0, 1, 2, 3], split  # each epoch once
        np.testing.assert_allclose([v for _, v in logged], [r[prefix + "loss"] for r in history(run_dir)],
                                   rtol=1e-6)
    modes = {oct(os.stat(d).st_mode & 0o777) for d, _, _ in os.walk(os.path.join(run_dir, "tensorboard"))}
    assert modes == {oct(0o777 & ~current_umask())}  # the user's umask, as for every other file


@pytest.mark.backend_independent  # files and messages
def test_resume_never_shortens_a_run(tmp_path, reference_run):
    import shutil

    ref_dir, _ = reference_run  # 3 epochs trained
    copy = str(tmp_path / "copy")
    shutil.copytree(ref_dir, copy)
    before = open(os.path.join(copy, "config.json")).read()
    result = run_train("--resume", copy, "--epochs", "2", timeout=120)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"--epochs 2: {copy} has trained 3 epochs already; --resume continues a run (--epochs 3 or more)" \
        in result.stderr
    assert open(os.path.join(copy, "config.json")).read() == before  # the run is left as it was


@pytest.mark.backend_independent  # files and messages
def test_a_signal_before_the_first_epoch_names_the_way_on(tmp_path, slow_npz):
    run_dir = tmp_path / "early"
    proc = subprocess.Popen(train_cmd("--data", slow_npz, "--epochs", "3", *TINY, *SLOW_FLAGS, "--out", str(tmp_path),
                                      "--run-name", "early"), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not os.path.exists(run_dir / "config.json") and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # the folder and its config exist; epoch 1 has not completed
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    if os.path.exists(run_dir / "checkpoint" / "state.json"):
        pytest.skip("epoch 1 completed before the signal arrived")
    # Whether it landed before fit (the folder's own line) or in fit's first batch: the way on is named.
    assert stderr.strip().splitlines()[-1].endswith(f"python train.py --resume {run_dir}"), stderr[-2000:]
    result = run_train("--resume", str(run_dir), timeout=300)  # and that works: the folder's name is not lost
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.backend_independent  # TensorFlow's autograph files: what this test looks for
def test_a_signal_outside_training_leaves_no_autograph_files(tmp_path, slow_npz):
    scratch = tmp_path / "tmp"  # this process's temporary folder, so that other processes' files do not count
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "KERAS_BACKEND": "tensorflow"}
    run_dir = str(tmp_path / "ag")
    proc = subprocess.Popen(train_cmd("--data", slow_npz, "--epochs", "1", "--hidden", "64", "--iw-samples", "3000",
                                      "--out", str(tmp_path), "--run-name", "ag"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_for_epoch(run_dir, 1, proc)  # training is over: the final evaluation (k = 3000) runs now
    time.sleep(1)
    assert proc.poll() is None, "the final evaluation ended before the signal"
    assert any(n.startswith("__autograph_generated_file") for n in os.listdir(scratch))  # TensorFlow wrote some
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted by SIGINT" in stderr, stderr[-2000:]
    assert [n for n in os.listdir(scratch) if n.startswith("__autograph_generated_file")] == []
