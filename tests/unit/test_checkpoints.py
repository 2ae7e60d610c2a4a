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
