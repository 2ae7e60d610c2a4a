"""Signals outside training: Ctrl-C during a long evaluation or while the figures are written keeps every file
whole, and signals during the final save are ignored until it completes."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, TINY, gif_frames

pytestmark = pytest.mark.backend_independent


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
