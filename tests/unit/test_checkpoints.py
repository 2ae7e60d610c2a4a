"""mnist_vae/checkpoints.py: a checkpoint restores every variable, skips a non-finite epoch, and never needs
unsafe loading."""
import os

import numpy as np
import pytest
from conftest import (
    ROOT,  # noqa: E402  (the repository root)
    read_history,
)

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

history = read_history


def test_checkpoint_skips_a_non_finite_epoch_and_keeps_the_last_good_one(tmp_path):
    import keras

    from mnist_vae import checkpoints
    from mnist_vae.rundir import read_state
    from model import build_vae

    vae = build_vae("dense", 2, hidden=8, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam())
    saver = checkpoints.EpochCheckpoint(str(tmp_path))
    saver.set_model(vae)
    saver.set_params({"steps": 10, "epochs": 3})
    good = {"loss": 1.0, "reconstruction_loss": 0.5, "kl_loss": 0.5}
    saver.on_epoch_end(0, good)
    saver.wait()
    before = open(tmp_path / "checkpoint" / "epoch-0001.variables.npz", "rb").read()
    vae.first_nonfinite_step.assign(13)  # as the train step records it: global step 13 is epoch 2, batch 4
    saver.on_epoch_end(1, {**good, "loss": float("nan")})
    saver.wait()
    assert saver.diverged == (2, 4)
    assert read_state(str(tmp_path))["epoch"] == 1
    assert open(tmp_path / "checkpoint" / "epoch-0001.variables.npz", "rb").read() == before
    assert len(history(str(tmp_path))) == 1


@pytest.mark.backend_independent  # files and messages
def test_project_never_needs_unsafe_loading():
    for name in os.listdir(ROOT):
        if name.endswith(".py"):
            text = open(os.path.join(ROOT, name)).read()
            for unsafe in ("safe_mode=False", "import pickle", "allow_pickle=True", "eval("):
                assert unsafe not in text, f"{name} uses {unsafe}"


def test_a_checkpoint_restores_every_variable(tmp_path):
    """A checkpoint (every variable copied out and written in the background) restores the weights, the
    optimizer state and the sampling stream."""
    import keras
    from keras import ops

    from mnist_vae import checkpoints
    from mnist_vae.rundir import read_state
    from model import build_vae

    batch = {"image": np.random.default_rng(0).random((16, 28, 28, 1)).astype(np.float32)}
    trained = build_vae("dense", 2, hidden=8, seed=0)
    trained.compile(optimizer=keras.optimizers.Adam())
    trained.train_on_batch(batch)
    saver = checkpoints.EpochCheckpoint(str(tmp_path / "new"))
    saver.set_model(trained)
    saver.set_params({"steps": 1, "epochs": 1})
    saver.on_epoch_begin(0)
    saver.on_train_batch_end(0)
    saver.on_epoch_end(0, {"loss": 1.0, "reconstruction_loss": 0.5, "kl_loss": 0.5})
    saver.on_train_end()
    for run, name in (("new", "epoch-0001.variables.npz"),):
        fresh = build_vae("dense", 2, hidden=8, seed=1)
        fresh.compile(optimizer=keras.optimizers.Adam())
        checkpoints.restore(fresh, str(tmp_path / run), {"weights": name})
        for (key, want), (_, got) in zip(checkpoints.checkpointed_variables(trained),
                                         checkpoints.checkpointed_variables(fresh)):
            np.testing.assert_array_equal(ops.convert_to_numpy(got.value), ops.convert_to_numpy(want.value),
                                          err_msg=f"{run}: {key}")
    assert read_state(str(tmp_path / "new"))["weights"] == "epoch-0001.variables.npz"


@pytest.mark.backend_independent  # a clock and a file
def test_the_training_time_adds_up_across_sessions_and_gives_the_run_its_wall_time(tmp_path):
    """state.json's training_seconds: the committed epochs' wall time, each session counted from its training's
    start, carried over by a resume; unknown (absent) after resuming a checkpoint that did not keep it. The run's
    wall time is then that plus its evaluation's, however long it lay stopped between sessions."""
    import json
    import time

    import keras

    from mnist_vae import checkpoints
    from mnist_vae.rundir import RunError, read_state
    from mnist_vae.runfolder import RunFolder
    from model import build_vae

    vae = build_vae("dense", 2, hidden=8, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam())
    logs = {"loss": 1.0, "reconstruction_loss": 0.5, "kl_loss": 0.5}

    def session(training_seconds, pause):
        saver = checkpoints.EpochCheckpoint(str(tmp_path), read_state(str(tmp_path))["history"] if training_seconds
                                            else [], training_seconds=training_seconds)
        saver.set_model(vae)
        saver.set_params({"steps": 10, "epochs": 3})
        time.sleep(pause)  # before training starts: not counted
        began = time.monotonic()
        saver.on_train_begin()
        time.sleep(0.3)
        saver.on_epoch_end(len(saver.rows), logs)
        saver.on_train_end()
        return time.monotonic() - began

    first = session(0.0, 0.0)
    after_first = read_state(str(tmp_path))["training_seconds"]
    assert 0.3 <= after_first <= first + 0.01
    second = session(after_first, 0.5)  # a resume, half a second after the process started
    state = read_state(str(tmp_path))
    assert state["epoch"] == 2
    assert after_first + 0.3 <= state["training_seconds"] <= after_first + second + 0.01

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "eval.json").write_text(json.dumps({"seconds": 30.0}))
    os.utime(tmp_path / "config.json", (0, 0))  # a run begun long ago: its folder's clock is not its time
    minutes, _ = RunFolder(str(tmp_path)).wall_time()
    assert minutes == pytest.approx((state["training_seconds"] + 30.0) / 60)

    session(None, 0.0)  # resumed from a checkpoint without training_seconds: the time is unknown, not restarted
    assert "training_seconds" not in read_state(str(tmp_path))
    assert RunFolder(str(tmp_path)).wall_time()[0] > 60  # config.json's time to eval.json's, as before

    path, latest = tmp_path / "checkpoint" / "state.json", read_state(str(tmp_path))
    for edited in ("-5", "NaN", '"soon"'):
        path.write_text(json.dumps(latest)[:-1] + f', "training_seconds": {edited}}}')
        with pytest.raises(RunError, match="unreadable checkpoint state"):
            read_state(str(tmp_path))
