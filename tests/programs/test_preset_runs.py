"""The published recipes as presets: their settings, the staged learning rate, the validation slice, the output
bias from the pixel means, and what a preset's run says about the published figure."""
import json
import os

import numpy as np
import pytest
from conftest import checkpoint_arrays, read_history, run_main

from mnist_vae import data, presets

TINY_IWAE = ["--hidden", "16,16", "--latent-dim", "3", "--batch-size", "64", "--iw-samples", "5", "--validation", "40"]


def train(*args):
    result = run_main("train", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.slow
def test_a_staged_run_follows_the_schedule_and_resumes_mid_stage_exactly(tmp_path, small_npz):
    flags = ["--data", small_npz, "--hidden", "16", "--batch-size", "64", "--iw-samples", "2", "--lr-schedule",
             "staged", "--lr", "0.01", "--deterministic", "--out", tmp_path]
    train(*flags, "--epochs", "6", "--run-name", "straight")
    train(*flags, "--epochs", "3", "--run-name", "resumed")  # stops inside stage 1 (epochs 1-3)
    resumed = train("--resume", tmp_path / "resumed", "--epochs", "6")
    assert "resuming" in resumed.stdout
    straight, again = read_history(tmp_path / "straight"), read_history(tmp_path / "resumed")
    assert [row["learning_rate"] for row in straight] == pytest.approx(
        [0.01 * 10 ** (-stage / 7) for stage in (0, 1, 1, 1, 2, 2)], rel=1e-6)
    assert straight == again  # the stages' NLL included
    # The NLL at the end of each stage (passes 1 and 4), empty between them, with the final bound's meaning.
    assert [row["test_nll_iw"] is not None for row in straight] == [True, False, False, True, False, False]
    first, second = straight[0], straight[3]
    assert 0 < second["test_nll_iw_stderr"] < 10 and second["test_nll_iw"] < first["test_nll_iw"]
    assert second["test_nll_iw"] <= second["val_loss"] + 3 * second["test_nll_iw_stderr"]  # a bound at least as tight
    assert os.path.getsize(tmp_path / "straight" / "nll_by_stage.png") > 0
    assert "nll_by_stage.png" in open(tmp_path / "straight" / "report.html").read()
    for (name, a), b in zip(sorted(checkpoint_arrays(tmp_path / "straight").items()),
                            (b for _, b in sorted(checkpoint_arrays(tmp_path / "resumed").items()))):
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.slow
def test_a_preset_run_says_what_to_compare_with_and_starts_from_the_pixel_means(tmp_path, small_npz):
    result = train("--preset", "iwae-vae", *TINY_IWAE, "--stages", "2", "--lr", "1e-12", "--data", small_npz,
                   "--out", tmp_path, "--run-name", "p")
    # A tiny model is no yardstick for the paper's: both the start and the end of the run say so, and why.
    void = ("--preset iwae-vae with --batch-size 64, --latent-dim 3, --hidden 16,16, --lr 1e-12, --validation 40: "
            "NOT comparable with the published 86.76 nats (Burda et al. 2015 (IWAE), Table 1, VAE (k = 1))")
    assert result.stdout.count(void) == 2 and "compare: " + void in result.stdout
    assert "stages 0-1, 4 passes" in result.stdout and "SHORTENED" in result.stdout
    run_dir = tmp_path / "p"
    config = json.load(open(run_dir / "config.json"))
    assert (config["preset"], config["epochs"], config["hidden"], config["train_images"]) == ("iwae-vae", 4,
                                                                                              "16,16", 280)
    assert config["command"].startswith("python train.py --preset iwae-vae --batch-size 64 --latent-dim 3 --hidden "
                                        "16,16 --lr 1e-12 --stages 2 --iw-samples 5 --data ")
    assert {"validation_loss", "validation_kl_loss", "learning_rate"} <= set(read_history(run_dir)[0])
    page = open(run_dir / "report.html").read()
    assert "published recipe" in page and "NOT comparable" in page and "SHORTENED" in page
    assert "beside the published figure" not in page
    # With a learning rate of 1e-12 the output bias is still what it started from: the logit of the mean
    # pixels of the 280 images trained on (the 40 held out excluded).
    import keras

    splits = data.load_for_run(small_npz, "mnist", 0.2, None, "dynamic", 0, validation=40)
    means = np.clip(data.mean_pixels(splits.x_train).reshape(-1), 0.001, 0.999)
    bias = keras.saving.load_model(run_dir / "model.keras").decoder.get_layer("pixel_logits").bias.numpy()
    np.testing.assert_allclose(bias, np.log(means / (1 - means)), atol=1e-4)


@pytest.mark.slow
def test_without_a_preset_nothing_is_said_of_published_figures(finished_run):
    page = open(os.path.join(finished_run, "report.html")).read()
    assert "published recipe" not in page and "learning-rate schedule" not in page
    assert presets.published_line(None) == "" and presets.compared_line(None, {}) == ""


@pytest.mark.slow
def test_resume_keeps_a_shortened_staged_runs_length(tmp_path, small_npz):
    """--lr-schedule staged --epochs 2 is a 2-epoch run: --resume finds it complete (it never stretches it to the
    schedule's 3,280 passes), and one stopped in its final save gets its outputs written, not more epochs."""
    run = tmp_path / "s"
    assert train("--lr-schedule", "staged", "--epochs", "2", *TINY_IWAE, "--data", small_npz, "--out", tmp_path,
                 "--run-name", "s").returncode == 0
    config = open(run / "config.json").read()
    result = run_main("train", "--resume", run)
    assert result.returncode == 0 and "is complete (2 epochs" in result.stdout
    assert open(run / "config.json").read() == config
    for name in ("model.keras", "eval.json", "report.html", "metrics.json"):  # Ctrl-C in the final evaluation
        os.remove(run / name)
    result = run_main("train", "--resume", run)
    assert result.returncode == 0 and "writing the outputs it is missing" in result.stdout, result.stderr
    assert json.load(open(run / "config.json"))["epochs"] == 2 and len(read_history(run)) == 2
    assert run_main("evaluate", run, "--iw-samples", "2").returncode == 0
    result = run_main("train", "--resume", run, "--stages", "1")
    assert result.returncode == 1 and result.stderr.strip() == (
        f"error: --stages 1 (1 pass): {run} has trained 2 epochs already; --resume continues a run (--epochs 2 or "
        "more), it never shortens one")
    result = run_main("train", "--resume", run, "--stages", "2")  # 4 passes: two more epochs
    assert result.returncode == 0 and json.load(open(run / "config.json"))["epochs"] == 4
