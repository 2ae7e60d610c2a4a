"""bench.py runs and reports its figures (a smoke test: speed is measured by bench.py, never asserted)."""
import json
import os
import subprocess
import sys

import pytest

# bench.py chooses its backends.
pytestmark = [pytest.mark.backend_independent, pytest.mark.slow, pytest.mark.multiprocess]

from conftest import ROOT  # noqa: E402  (the repository root)

BENCH = os.path.join(ROOT, "tools", "bench.py")


def test_bench_prints_one_json_line_per_configuration_and_a_table(small_npz):
    result = subprocess.run([sys.executable, BENCH, "--data", small_npz, "--configs",
                             "dense-512-2", "--epochs", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    peak, row = lines
    assert peak["peak_gflops"] > 0 and row["config"] == "dense-512-2" and row["images"] == 320
    for key in ("images_per_s", "s_per_epoch", "s_to_first_epoch_end", "peak_rss_mb", "achieved_gflops", "peak_gflops",
                "eval_images_per_s", "eval_gflops", "backend_matmul_gflops", "mutual_information_s"):
        assert row[key] > 0, key
    # 784-512-2 and back: 2 x (784*512 + 512*4 + 2*512 + 512*784) multiply-adds forward, x3 for training.
    assert row["train_mflop_per_image"] == round(3 * 2 * (784 * 512 * 2 + 512 * 4 + 2 * 512) / 1e6, 2)
    # The evaluation decodes k = 1000 draws per image: 2 x (2*512 + 512*784) multiply-adds each.
    assert row["eval_mflop_per_image"] == round(1000 * 2 * (2 * 512 + 512 * 784) / 1e6, 1)
    assert row["eval_images"] == 80 and row["mutual_information_images"] == 80  # every test image at hand
    # The start-up's steps add up to the time at which the first epoch ended.
    assert abs(sum(row["start_up_s"].values()) - row["s_to_first_epoch_end"]) < 0.05
    for table in ("training (", "evaluation (", "start-up:"):
        assert table in result.stdout, table
    assert result.stdout.count("dense-512-2   tensorflow") == 3


def test_bench_memory_measures_a_run_on_the_full_split_only(small_npz):
    """--memory refuses a smaller set rather than understate the memory (the real run is minutes: not here)."""
    result = subprocess.run([sys.executable, BENCH, "--data", small_npz, "--memory"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 1 and "60000 training and 10000 test images" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_refuses_bad_flags_and_exits_non_zero_when_every_configuration_fails(tmp_path):
    for flags in (["--epochs", "0"], ["--batch-size", "0"], ["--limit", "-3"]):
        result = subprocess.run([sys.executable, BENCH, *flags], capture_output=True,
                                text=True, timeout=120, cwd=ROOT)
        assert result.returncode == 2 and "error: argument" in result.stderr, flags
    result = subprocess.run([sys.executable, BENCH, "--data", str(tmp_path / "nonexistent"),
                             "--configs", "dense-512-2", "--epochs", "2"], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 1 and "1 of 1 configurations failed" in result.stderr.splitlines()[-1]


def test_the_small_batch_regime_runs_beside_its_hand_fused_reference(small_npz):
    result = subprocess.run([sys.executable, BENCH, "--data", small_npz, "--configs",
                             "iwae-k5", "--epochs", "2", "--eval-k", "10"], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    ours, reference = lines[1:]
    assert (ours["batch_size"], reference["batch_size"], reference["backend"]) == (20, 20, "reference")
    assert ours["images_per_s"] > 0 and reference["images_per_s"] > 0
    # 784-200-200-50 tanh with k = 5 draws decoded: encoder + 5 decoders, x3 for training.
    encoder = 784 * 200 + 200 * 200 + 2 * 200 * 50
    decoder = 50 * 200 + 200 * 200 + 200 * 784
    assert ours["train_mflop_per_image"] == round(3 * 2 * (encoder + 5 * decoder) / 1e6, 2)
    assert "hand-fused JAX loop" in result.stdout and "iwae-k5       reference" in result.stdout


def test_dense_400_20_runs_beside_a_plain_pytorch_loop(small_npz):
    """Whole epochs through train.py's own callbacks, and the plain PyTorch loop's whole epochs, with their ratio."""
    result = subprocess.run([sys.executable, BENCH, "--data", small_npz, "--configs",
                             "dense-400-20", "--epochs", "2", "--eval-k", "10"], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    ours, fused, loop = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")][1:]
    assert (loop["backend"], loop["images"], loop["batch_size"]) == ("pytorch-loop", ours["images"], 128)
    assert (fused["backend"], fused["batch_size"]) == ("reference", 128) and fused["images_per_s"] > 0
    # Its loss is a real one: binary cross-entropy summed over 784 pixels, near 784 x log 2 untrained.
    assert 100 < loop["last_test_loss"] < 800 and loop["s_whole_epoch"] > 0
    assert ours["s_whole_epoch"] >= ours["s_per_epoch"] > 0
    ratio = [line for line in result.stdout.splitlines() if line.startswith("dense-400-20  tensorflow")][-1]
    assert float(ratio.split()[-1]) == pytest.approx(ours["s_whole_epoch"] / loop["s_whole_epoch"], abs=0.01)
