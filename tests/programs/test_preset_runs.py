"""The published recipes as presets: their settings, the staged learning rate, the validation slice, the output
bias from the pixel means, and what a preset's run says about the published figure."""
import json
import math
import os
import shlex

import numpy as np
import pytest
from conftest import checkpoint_arrays, read_history, run_main

from mnist_vae import data, presets, settings
from mnist_vae.presets import PRESETS, learning_rate_at, staged_passes

# The recipes as the papers and pytorch/examples state them (issue 21), written out independently of presets.py.
BURDA = {"arch": "dense", "hidden": "200,200", "activation": "tanh", "latent_dim": 50, "batch_size": 20,
         "lr": 1e-3, "adam_epsilon": 1e-4, "lr_schedule": "staged", "stages": 8, "binarize": "dynamic",
         "validation": 400, "output_bias": "pixel-means", "iw_samples": 5000, "likelihood": "bernoulli",
         "beta": 1.0, "kl_warmup": 0}
RECIPES = {
    "pytorch-examples": ({"arch": "dense", "hidden": 400, "latent_dim": 20, "activation": "relu", "batch_size": 128,
                          "lr": 1e-3, "epochs": 10, "binarize": "none", "objective": "elbo", "lr_schedule": "constant",
                          "validation": 0, "output_bias": "zero", "beta": 1.0, "kl_warmup": 0}, 105.5, None),
    "iwae-vae": ({**BURDA, "objective": "elbo"}, 86.76, 19),
    "iwae-k5": ({**BURDA, "objective": "iwae", "k": 5}, 85.54, 22),
    "iwae-k50": ({**BURDA, "objective": "iwae", "k": 50}, 84.78, 25),
}
TINY_IWAE = ["--hidden", "16,16", "--latent-dim", "3", "--batch-size", "64", "--iw-samples", "5", "--validation", "40"]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_preset_sets_its_recipe_and_its_published_figure(name):
    recipe, figure, active_units = RECIPES[name]
    args, given = settings.parse_args(["--preset", name])
    assert given == {"preset"}
    for setting, value in recipe.items():
        assert getattr(args, setting) == value, setting
    assert (PRESETS[name].figure, PRESETS[name].active_units) == (figure, active_units)
    assert args.preset == name


def test_a_flag_beside_a_preset_overrides_that_setting_only():
    args, given = settings.parse_args(["--preset", "iwae-k5", "--batch-size", "100", "--stages", "6"])
    assert (args.batch_size, args.stages, args.k, args.hidden, args.adam_epsilon) == (100, 6, 5, "200,200", 1e-4)
    args.epochs = staged_passes(args.stages)  # what train.py makes of --stages
    assert settings.reproduce_command(args) == "python train.py --preset iwae-k5 --batch-size 100 --stages 6"
    plain, _ = settings.parse_args(["--batch-size", "100"])
    assert (plain.preset, plain.hidden, plain.activation, plain.lr_schedule) == (None, 512, "relu", "constant")


def test_the_staged_schedule_at_chosen_epochs():
    # Stage i lasts 3^i passes at 1e-3 * 10^(-i/7): epochs 0 | 1-3 | 4-12 | 13-39 | ... | 1093-3279 (0-based).
    for epoch, stage in ((0, 0), (1, 1), (3, 1), (4, 2), (12, 2), (13, 3), (363, 5), (364, 6), (1092, 6),
                         (1093, 7), (3279, 7)):
        assert learning_rate_at(epoch, 1e-3, "staged") == pytest.approx(1e-3 * 10 ** (-stage / 7), rel=1e-12), epoch
    assert learning_rate_at(3279, 1e-3, "staged") == pytest.approx(1e-4)
    assert learning_rate_at(500, 3e-4, "constant") == 3e-4
    assert [staged_passes(s) for s in (1, 6, 8)] == [1, 364, 3280]


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
    assert straight == again
    for (name, a), b in zip(sorted(checkpoint_arrays(tmp_path / "straight").items()),
                            (b for _, b in sorted(checkpoint_arrays(tmp_path / "resumed").items()))):
        np.testing.assert_array_equal(a, b, err_msg=name)


def unique_images(n):
    """n images whose first pixels spell their index: each one can be told apart."""
    images = np.zeros((n, 28, 28, 1), np.uint8)
    images[:, 0, 0, 0], images[:, 0, 1, 0] = np.arange(n) % 256, np.arange(n) // 256
    return images


def test_the_validation_slice_is_disjoint_from_training_and_fixed_by_the_seed():
    images = unique_images(1000)
    splits = data.Splits(images, np.arange(1000) % 10, unique_images(7), np.zeros(7, int), "synthetic")
    held = data.hold_out_validation(splits, 40, seed=3)
    index = lambda x: x[:, 0, 0, 0].astype(int) + 256 * x[:, 0, 1, 0].astype(int)  # noqa: E731
    train_ids, valid_ids = index(held.x_train), index(held.x_valid)
    assert (len(train_ids), len(valid_ids)) == (960, 40)
    assert not set(train_ids) & set(valid_ids) and set(train_ids) | set(valid_ids) == set(range(1000))
    assert np.all(np.diff(train_ids) > 0)  # the rest keep their order
    np.testing.assert_array_equal(held.y_valid, valid_ids % 10)  # labels follow their images
    assert held.x_test is splits.x_test
    np.testing.assert_array_equal(index(data.hold_out_validation(splits, 40, seed=3).x_valid), valid_ids)
    assert set(index(data.hold_out_validation(splits, 40, seed=4).x_valid)) != set(valid_ids)
    with pytest.raises(data.DataError, match="leaves none"):
        data.hold_out_validation(splits, 1000, seed=3)


def test_the_output_bias_is_the_logit_of_the_clipped_pixel_means():
    from model import build_vae, output_bias_from_pixel_means

    images = np.zeros((4, 28, 28, 1), np.uint8)
    images[:2, 10:20, 10:20] = 255  # pixels with mean 0 (clipped), 0.5 and, below, 1 (clipped)
    images[:, 0, 0] = 255
    means = data.mean_pixels(images)
    vae = build_vae("dense", 2, hidden=8, seed=0)
    output_bias_from_pixel_means(vae, means)
    bias = vae.decoder.get_layer("pixel_logits").bias.numpy().reshape(28, 28)
    assert bias[0, 0] == pytest.approx(math.log(0.999 / 0.001), rel=1e-6)
    assert bias[15, 15] == pytest.approx(0.0, abs=1e-7)
    assert bias[27, 27] == pytest.approx(math.log(0.001 / 0.999), rel=1e-6)


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


def test_the_conv_model_refuses_what_only_the_dense_one_has():
    for flags in (["--activation", "tanh"], ["--output-bias", "pixel-means"]):
        result = run_main("train", "--arch", "conv", *flags, "--data", "nowhere")
        assert result.returncode == 2 and "conv model keeps ReLU" in result.stderr.strip()  # a usage error
        assert len(result.stderr.strip().splitlines()) == 1
        assert f"{' '.join(flags)} is for the dense model's" in result.stderr
    result = run_main("train", "--preset", "iwae-vae", "--arch", "conv", "--data", "nowhere")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: --activation tanh --output-bias pixel-means come from --preset iwae-vae and are for the dense "
        "model's hidden and output layers; the conv model keeps ReLU and a zero output bias"]


def test_a_presets_k_goes_with_its_objective_and_only_a_typed_k_is_refused():
    from mnist_vae.config import resolve

    args, _ = resolve(["--preset", "iwae-k5", "--objective", "elbo"])
    assert (args.objective, args.k) == ("elbo", 1)
    result = run_main("train", "--objective", "elbo", "--k", "5", "--data", "nowhere")
    assert result.returncode == 2 and "--k 5 needs --objective iwae" in result.stderr


def test_the_published_figure_is_shown_only_for_the_recipe_and_its_allowed_changes():
    def config(*flags):
        args, _ = settings.parse_args(list(flags))
        return {**vars(args), "k": settings.resolved_k(args.objective, args.k)}

    # The seed, the data's place, the evaluation's k and a shortened staged schedule leave the recipe as it is.
    for flags in ([], ["--seed", "3", "--iw-samples", "1000", "--stages", "6", "--data", "x"], ["--epochs", "40"]):
        assert settings.preset_overrides(config("--preset", "iwae-k5", *flags)) == [], flags
    for flags, named in ((["--binarize", "none", "--latent-dim", "2"], ["--latent-dim 2", "--binarize none"]),
                         (["--k", "5"], None), (["--beta", "0.5"], ["--beta 0.5"]), (["--limit", "500"], None),
                         (["--objective", "elbo"], ["--objective elbo"]), (["--conditional"], ["--conditional"])):
        found = settings.preset_overrides(config("--preset", "iwae-k50", *flags))
        assert found == (named or [f"{flags[0]} {flags[1]}"]), flags
    assert settings.preset_overrides(config("--preset", "pytorch-examples", "--epochs", "5")) == ["--epochs 5"]
    assert settings.preset_overrides(config("--latent-dim", "7")) == []  # no preset: nothing to void
    results = {"nll_iw": 85.0, "nll_iw_stderr": 0.2, "iw_samples": 5000, "active_units": 22}
    assert presets.compared_line("iwae-k5", results) == ("Burda et al. 2015 (IWAE), Table 1, IWAE k = 5: NLL "
                                                         "(k = 5000) 85.00 ± 0.20 here, published 85.54: -0.54 nats; "
                                                         "active units 22, published 22")
    void = presets.compared_line("iwae-k5", results, ["--k 50"])
    assert void.startswith("--preset iwae-k5 with --k 50: NOT comparable") and "85.00" not in void
    assert presets.published_line("iwae-k5", ["--k 50"]) == void


def test_the_reproduce_command_replays_the_run_overrides_included():
    from mnist_vae.config import resolve

    for flags in (["--preset", "iwae-k50", "--k", "5"], ["--preset", "iwae-k5", "--objective", "elbo"],
                  ["--preset", "iwae-vae", "--stages", "3", "--beta", "0.5"], ["--objective", "iwae", "--k", "7"],
                  ["--preset", "pytorch-examples", "--epochs", "3", "--seed", "4"]):
        args, _ = resolve(flags + ["--backend", "tensorflow"])
        command = settings.reproduce_command(args)
        replayed, _ = resolve(shlex.split(command)[2:] + ["--backend", "tensorflow"])
        assert replayed == args, command


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
