"""mnist_vae/runfolder.py: the one reader of run folders, on folders made by hand in each state."""
import json
import os
import shutil

import pytest
from conftest import TINY, run_main

from mnist_vae import settings
from mnist_vae.rundir import RunError
from mnist_vae.runfolder import RunFolder

pytestmark = pytest.mark.backend_independent


def make(folder, epochs=3, trained=None, metrics=None, evaluation=None, files=()):
    folder.mkdir()
    config = {**settings.DEFAULTS, "epochs": epochs, "format": 2, "train_images": 100, "test_images": 20}
    (folder / "config.json").write_text(json.dumps(config))
    if trained:
        (folder / "checkpoint").mkdir()
        weights = f"epoch-{trained:04d}.variables.npz"  # the name a checkpoint writes (read_state allows no other)
        (folder / "checkpoint" / weights).write_text("")
        rows = [{"epoch": e + 1, "loss": 10.0 - e} for e in range(trained)]
        (folder / "checkpoint" / "state.json").write_text(json.dumps({"epoch": trained, "weights": weights,
                                                                      "history": rows}))
        (folder / "history.csv").write_text("epoch,loss\n" + "".join(f"{r['epoch']},{r['loss']}\n" for r in rows))
    for name, value in (("metrics.json", metrics), ("eval.json", evaluation)):
        if value is not None:
            (folder / name).write_text(json.dumps(value))
    for name in files:
        (folder / name).write_text("x")
    return RunFolder(folder)


def test_a_complete_run_and_whose_numbers_it_shows(tmp_path):
    run = make(tmp_path / "done", trained=3, metrics={"epochs": 3, "partial": False}, evaluation={"epoch": 3},
               files=("model.keras", "report.html"))
    assert run.name == "done" and run.epochs_trained == 3 and run.is_complete() and run.settings.epochs == 3
    assert run.numbers() == ({"epochs": 3, "partial": False}, {"epoch": 3})
    assert run.history(2) == {"epoch": [1.0, 2.0], "loss": [10.0, 9.0]}
    assert run.status(run.metrics, run.evaluation) == "complete: 3 epochs"
    assert run.model_to_evaluate() == (3, str(tmp_path / "done" / "model.keras"))
    older = make(tmp_path / "older", trained=3, metrics={"epochs": 3, "partial": False}, evaluation={"epoch": 2},
                 files=("model.keras",))
    assert older.numbers() == ({"epochs": 3, "partial": False}, None)  # another model's evaluation: not beside
    assert older.status(older.metrics, {"epoch": 2}).endswith("are of the model of epoch 2 (evaluate.py "
                                                              "--older-model), not of epoch 3")
    assert not older.is_complete()  # no report.html


def test_every_unfinished_state_names_the_way_on(tmp_path):
    for name, trained, metrics, files, message in (
            ("fresh", 0, None, (), "no epoch has completed yet, so there is no model.keras"),
            ("some", 2, {"epochs": 2, "partial": True}, (), "stopped after epoch 2 of 3, before model.keras"),
            ("final-save", 3, None, ("model.keras",), "all 3 epochs are trained but the final outputs were not all"),
            ("no-outputs", 3, None, (), "all 3 epochs are trained but the final outputs were not written")):
        run = make(tmp_path / name, trained=trained, metrics=metrics, files=files)
        with pytest.raises(RunError, match=message):
            run.model_to_evaluate()
        assert not run.is_complete()
    assert make(tmp_path / "stopped", trained=2, metrics={"epochs": 2, "partial": True}).status(
        {"epochs": 2, "partial": True}) == "stopped after 2 of 3 epochs; python train.py --resume continues it"
    with pytest.raises(RunError, match="no metrics.json yet"):
        RunFolder(tmp_path / "fresh").numbers()


def test_an_edited_config_is_refused_whatever_is_asked(tmp_path):
    run = make(tmp_path / "edited")
    config = json.loads((tmp_path / "edited" / "config.json").read_text())
    (tmp_path / "edited" / "config.json").write_text(json.dumps({**config, "arch": "resnet"}))
    with pytest.raises(RunError, match="arch = 'resnet' is not a valid --arch"):
        run.settings


def snapshot(folder):
    """Every file's modification time, but the lock's (each process that takes it writes its pid there)."""
    return {os.path.join(dirpath, name): os.stat(os.path.join(dirpath, name)).st_mtime_ns
            for dirpath, _, names in os.walk(folder) for name in names if name != ".lock"}


@pytest.mark.slow
def test_a_model_keras_from_another_run_or_of_another_kind_is_refused(tmp_path, finished_run, small_npz):
    other = run_main("train", "--data", small_npz, "--epochs", "1", *TINY, "--latent-dim", "5", "--out", tmp_path,
                     "--run-name", "five")
    assert other.returncode == 0, other.stderr
    run = tmp_path / "copied"
    shutil.copytree(finished_run, run)
    shutil.copy(tmp_path / "five" / "model.keras", run / "model.keras")
    before = snapshot(run)
    result = run_main("evaluate", run, "--iw-samples", "2")
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"error: {run / 'model.keras'} is not this run's model (its z has 5 dimensions where config.json says 2): "
        "was it copied from another run?"]
    import keras

    keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)]).save(run / "model.keras")
    result = run_main("evaluate", run, "--iw-samples", "2")
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"error: {run / 'model.keras'} is a Sequential, not a VAE of model.py: not this run's model"]
    after = snapshot(run)
    assert {k: v for k, v in after.items() if not k.endswith("model.keras")} == \
        {k: v for k, v in before.items() if not k.endswith("model.keras")}  # eval.json, figures, report unchanged
