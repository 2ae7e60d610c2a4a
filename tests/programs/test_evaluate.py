"""evaluate.py as a user runs it: it reproduces a run's numbers, takes moved data, and refuses other
images, older models and folders that are not runs in one line."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import (
    ROOT,
    TINY,
    read_history,
    run_main,
    write_npz,
)

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)

PLOTS = ["loss.png", "reconstructions.png", "samples.png", "latent_scatter.png", "latent_manifold.png",
         "interpolation.png", "kl_per_dim.png"]


@pytest.fixture(scope="module")
def binarized_run(tmp_path_factory, small_npz):
    out = str(tmp_path_factory.mktemp("runs"))
    result = run_main("train", "--data", small_npz, "--epochs", "3", "--batch-size", "32", "--hidden", "64",
                      "--latent-dim", "3", "--binarize", "dynamic", "--kl-warmup", "2", "--beta", "0.8",
                      "--iw-samples", "20", "--out", out, "--run-name", "bin")
    assert result.returncode == 0, result.stderr[-2000:]
    return os.path.join(out, "bin"), result


def _evaluate(*args):
    return run_main("evaluate", *args)


@pytest.mark.slow
def test_training_run_records_binarization_warmup_and_evaluation(binarized_run):

    from PIL import Image

    run_dir, result = binarized_run
    assert "binarize=dynamic" in result.stdout and "NLL estimate, k=20" in result.stdout
    rows = read_history(run_dir)
    assert [float(r["kl_weight"]) for r in rows] == pytest.approx([0.4, 0.8, 0.8])  # beta * epoch / warm-up
    # the first epoch's objective weighs the KL by 0.4: the warm-up's first step, not 0
    assert float(rows[0]["loss"]) == pytest.approx(
        float(rows[0]["reconstruction_loss"]) + 0.4 * float(rows[0]["kl_loss"]), rel=1e-5)
    assert json.load(open(os.path.join(run_dir, "config.json")))["binarize"] == "dynamic"
    assert json.load(open(os.path.join(run_dir, "metrics.json")))["binarize"] == "dynamic"
    results = json.load(open(os.path.join(run_dir, "eval.json")))
    for key in ("negative_elbo", "reconstruction_loss", "kl_loss", "nll_iw", "iw_samples", "active_units",
                "active_unit_variances", "kl_per_dim", "binarize", "images", "data"):
        assert key in results, key
    assert results["iw_samples"] == 20 and results["images"] == 80 and results["binarize"] == "dynamic"
    assert len(results["kl_per_dim"]) == 3 and sum(results["kl_per_dim"]) == pytest.approx(results["kl_loss"], rel=1e-4)
    assert results["active_units"] == sum(v > 0.01 for v in results["active_unit_variances"])
    assert results["nll_iw"] < results["negative_elbo"]
    for name in PLOTS:
        image = Image.open(os.path.join(run_dir, name))
        image.load()
        assert image.width > 100 and image.height > 100, name
    gif = Image.open(os.path.join(run_dir, "progress.gif"))
    assert gif.n_frames == 3  # one frame per epoch


@pytest.mark.slow
def test_evaluate_reproduces_and_writes_eval_json(binarized_run):
    run_dir, _ = binarized_run
    before = json.load(open(os.path.join(run_dir, "eval.json")))
    for name in ("kl_per_dim.png", "loss.png"):
        os.remove(os.path.join(run_dir, name))
    result = run_main("evaluate", run_dir)  # k: the run's own (train.py's --iw-samples 20), not evaluate's 1000
    assert result.returncode == 0, result.stderr[-2000:]
    after = json.load(open(os.path.join(run_dir, "eval.json")))
    assert after["iw_samples"] == 20
    for key in ("negative_elbo", "nll_iw", "kl_loss", "active_units"):
        assert after[key] == pytest.approx(before[key], rel=1e-5)  # same model, same fixed noise
    assert os.path.exists(os.path.join(run_dir, "kl_per_dim.png")) and os.path.exists(os.path.join(run_dir, "loss.png"))
    assert "binarize=dynamic" in result.stdout
    result = run_main("evaluate", run_dir, "--iw-samples", "5", "--max-images", "10")
    assert result.returncode == 0, result.stderr[-2000:]
    # A partial evaluation goes to its own file; the run's eval.json and figures stay those of every image.
    assert json.load(open(os.path.join(run_dir, "eval-first10.json")))["images"] == 10
    assert json.load(open(os.path.join(run_dir, "eval.json"))) == after
    assert after["epoch"] == before["epoch"] == json.load(open(os.path.join(run_dir, "config.json")))["epochs"]


@pytest.mark.slow
def test_evaluate_refuses_bad_folders_with_one_line(tmp_path, binarized_run):
    import shutil

    cases = [(str(tmp_path / "absent"), "no such run folder"), (str(tmp_path), "not a run folder")]
    no_model = tmp_path / "no_model"
    no_model.mkdir()
    shutil.copy(os.path.join(binarized_run[0], "config.json"), no_model)
    cases.append((str(no_model), "no epoch has completed yet, so there is no model.keras; python train.py --resume"))
    truncated = tmp_path / "truncated"
    shutil.copytree(binarized_run[0], truncated)
    with open(truncated / "model.keras", "r+b") as f:
        f.truncate(1000)
    cases.append((str(truncated), "model.keras: cannot load"))
    for run_dir, message in cases:
        result = _evaluate(run_dir, "--iw-samples", "2")
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-1500:]
        assert message in result.stderr.strip().splitlines()[-1]
    assert _evaluate(str(tmp_path), "--iw-samples", "0").returncode == 2


@pytest.mark.backend_independent
@pytest.mark.slow
def test_evaluate_on_a_run_stopped_during_its_final_save_says_resume_writes_the_rest(tmp_path, finished_run):
    run = tmp_path / "saving"
    shutil.copytree(finished_run, run)
    for name in ("metrics.json", "progress.gif", "report.html"):  # model.keras is written first, these last
        os.remove(run / name)
    result = run_main("evaluate", run, "--iw-samples", "2")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert (f"all 2 epochs are trained but the final outputs were not all written; python train.py --resume {run} "
            "writes them") in result.stderr
    assert not os.path.exists(run / "report.html")


@pytest.mark.backend_independent
@pytest.mark.slow
def test_other_images_of_the_same_size_are_noticed(tmp_path, finished_run, digits):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    x, y = digits
    other = write_npz(tmp_path, "other.npz", (x[::-1].copy(), y[::-1].copy()), 320, 80)  # same sizes
    for program, args in (("train", ["--resume", run, "--epochs", "3", "--data", other]),
                          ("evaluate", [run, "--data", other])):
        result = run_main(program, *args)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, (program, result.stderr)
        assert f"not the images {run} was trained on" in result.stderr, program
    assert json.load(open(run / "metrics.json"))["epochs"] == 2  # nothing was trained further


@pytest.mark.backend_independent
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


@pytest.mark.backend_independent
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
