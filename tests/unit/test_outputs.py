"""mnist_vae/outputs.py: metrics.json says which KL weight its loss uses during a warm-up."""
import json

import pytest
from conftest import TINY, run_main

pytestmark = pytest.mark.backend_independent


@pytest.mark.slow
def test_metrics_say_which_kl_weight_their_loss_uses_during_a_warm_up(tmp_path, small_npz):
    result = run_main("train", "--data", small_npz, "--epochs", "2", "--kl-warmup", "10", *TINY, "--out", tmp_path,
                      "--run-name", "warm")
    assert result.returncode == 0, result.stderr
    metrics = json.load(open(tmp_path / "warm" / "metrics.json"))
    assert metrics["kl_weight_last_epoch"] == pytest.approx(0.2) and metrics["kl_weight_in_loss"] == 1.0
    assert metrics["loss"] == pytest.approx(metrics["reconstruction_loss"] + metrics["kl_loss"], rel=1e-5)
    assert "KL at weight 1" in metrics["loss_is"]
