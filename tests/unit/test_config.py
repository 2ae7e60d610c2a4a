"""mnist_vae/config.py: the command line (and a resumed run's config.json) resolved once into a frozen Config."""
import dataclasses
import json

import pytest

from mnist_vae import cli, settings
from mnist_vae.config import Config, from_saved, resolve

pytestmark = pytest.mark.backend_independent


def test_the_config_is_frozen_and_has_every_setting_typed():
    config, saved = resolve(["--latent-dim", "20", "--backend", "tensorflow"])
    assert saved is None and isinstance(config, Config) and config.latent_dim == 20 and config.k == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3
    assert [f.name for f in dataclasses.fields(Config)] == [s.name for s in settings.SETTINGS]
    types = {f.name: f.type for f in dataclasses.fields(Config)}
    assert (types["epochs"], types["lr"], types["conditional"], types["arch"]) == (int, float, bool, str)
    assert config.replace(epochs=3).epochs == 3 and config.epochs == 30  # a changed copy, never a change


def test_flags_that_do_not_go_together_are_usage_errors():
    for argv, message in ((["--k", "3"], "--k 3 needs --objective iwae"),
                          (["--arch", "conv", "--activation", "tanh"], "--activation tanh is for the dense"),
                          (["--likelihood", "continuous-bernoulli", "--binarize", "dynamic"], "is for grey pixels")):
        with pytest.raises(cli.UsageError, match=message):
            resolve(argv)
    assert cli.exit_on_user_error(resolve, ["--k", "3"]) == 2


def test_a_resumed_run_keeps_its_saved_settings_and_length(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)  # it would count as a --backend given
    run = tmp_path / "run"
    run.mkdir()
    original, _ = resolve(["--lr-schedule", "staged", "--epochs", "2", "--latent-dim", "5", "--backend", "jax",
                           "--data", str(tmp_path)])
    saved = {**original.as_dict(), "format": 2, "train_images": 10, "test_images": 5, "data_sha256": "x"}
    (run / "config.json").write_text(json.dumps(saved))
    resumed, got = resolve(["--resume", str(run)])
    assert got == saved and resumed == original.replace(resume=str(run))  # 2 epochs, not the schedule's 3,280
    assert resolve(["--resume", str(run), "--stages", "2"])[0].epochs == 4  # --stages says the length anew
    assert resolve(["--resume", str(run), "--epochs", "9"])[0].epochs == 9
    assert from_saved(saved) == original
    with pytest.raises(cli.UserError, match="--latent-dim 6 contradicts the saved config"):
        resolve(["--resume", str(run), "--latent-dim", "6"])
