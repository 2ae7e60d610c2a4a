"""mnist_vae/config.py: the command line (and a resumed run's config.json) resolved once into a frozen Config."""
import dataclasses
import json
import typing

import pytest
from conftest import run_main

from mnist_vae import cli, settings
from mnist_vae.config import Config, from_saved, resolve


@pytest.mark.backend_independent
def test_the_config_is_frozen_and_has_every_setting_typed():
    config, saved = resolve(["--latent-dim", "20", "--backend", "tensorflow"])
    assert saved is None and isinstance(config, Config) and config.latent_dim == 20 and config.k == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3
    assert config.replace(epochs=3).epochs == 3 and config.epochs == 30  # a changed copy, never a change


@pytest.mark.backend_independent
def test_the_configs_written_out_fields_are_the_settings_table():
    """Config's fields are written out and typed in config.py; each is a setting of settings.SETTINGS, in order,
    with its flag's default, and typed as its flag parses (None allowed where the default is None)."""
    fields = dataclasses.fields(Config)
    assert [f.name for f in fields] == [s.name for s in settings.SETTINGS]
    for field, setting in zip(fields, settings.SETTINGS):
        if setting.name == "hidden":  # parsed once, into a tuple of widths
            assert field.type == tuple[int, ...] and field.default == (setting.default,)
            continue
        assert field.default == setting.default, setting.name
        if setting.action == "store_true" or setting.default is not None:
            assert field.type == (bool if setting.action == "store_true" else type(setting.default)), setting.name
        else:  # no default: typed by what its flag parses, or None
            assert type(None) in typing.get_args(field.type) and len(typing.get_args(field.type)) == 2, setting.name
    assert object not in {f.type for f in fields}
    for given, widths in ((512, (512,)), ("200,200", (200, 200)), ([300, 300], (300, 300)), ((7,), (7,))):
        config = from_saved({**settings.DEFAULTS, "hidden": given})
        assert config.hidden == widths and config.as_dict()["hidden"] == (widths[0] if len(widths) == 1 else
                                                                           ",".join(map(str, widths)))


@pytest.mark.backend_independent
def test_flags_that_do_not_go_together_are_usage_errors():
    for argv, message in ((["--k", "3"], "--k 3 needs --objective iwae"),
                          (["--arch", "conv", "--activation", "tanh"], "--activation tanh is for the dense"),
                          (["--likelihood", "continuous-bernoulli", "--binarize", "dynamic"], "is for grey pixels"),
                          (["--gradient", "dreg"], "--gradient dreg is a gradient of the importance-weighted bound"),
                          (["--early-stopping", "5"], "--early-stopping 5 judges the validation slice's loss"),
                          (["--objective", "iwae", "--gradient", "dreg", "--prior", "vampprior"],
                           "the VampPrior's does"),
                          (["--log-var-min", "-6"], "--log-var-min and --log-var-max go together"),
                          (["--log-var-min", "2", "--log-var-max", "-6"], "--log-var-min 2.0 must be below")):
        with pytest.raises(cli.UsageError, match=message):
            resolve(argv)
    assert cli.exit_on_user_error(resolve, ["--k", "3"]) == 2
    # A negative bound reads as a value, not as a flag.
    assert (resolve(["--log-var-min", "-6", "--log-var-max", "2"])[0].log_var_min,) == (-6.0,)


@pytest.mark.backend_independent
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


@pytest.mark.backend_independent
def test_settings_that_would_do_nothing_are_refused_not_recorded():
    """A flag the other settings ignore would be kept in config.json, the reproduce command and compare.py's
    differences as if it counted: each is one usage error (a preset's own values are not the user's)."""
    for argv, message in ((["--pseudo-inputs", "7"], "--pseudo-inputs 7 is the VampPrior's: it needs --prior "
                                                     "vampprior"),
                          (["--stages", "3"], "--stages 3 is the staged schedule's"),
                          (["--data", "somewhere", "--dataset", "fashion_mnist"], "--dataset fashion_mnist picks what"),
                          (["--objective", "iwae", "--k", "1", "--gradient", "dreg"],
                           "--gradient dreg --k 1: with one draw the importance weights are all 1"),
                          (["--log-var-min", "0.5", "--log-var-max", "0.50000001"], "must be below --log-var-max")):
        with pytest.raises(cli.UsageError, match=message):
            resolve(argv)
    assert resolve(["--preset", "vampprior-standard"])[0].pseudo_inputs == 500  # the recipe's, not typed
    assert resolve(["--prior", "vampprior", "--pseudo-inputs", "7"])[0].pseudo_inputs == 7


@pytest.mark.backend_independent
def test_numbers_that_float32_cannot_tell_from_zero_and_paths_that_are_not_utf8_are_one_line():
    for argv in (["--log-var-min", "1e-400", "--log-var-max", "1e-300"], ["--lr", "1e-50"], ["--beta", "1e-46"]):
        result = run_main("train", *argv, "--data", "nowhere")
        errors = [line for line in result.stderr.splitlines() if "error" in line]  # after argparse's usage
        assert result.returncode == 2 and len(errors) == 1 and "too small to be told from 0 in float32" in errors[0]
    name = b"run-\xff".decode("utf-8", "surrogateescape")  # what Linux hands Python for a name that is not UTF-8
    for argv in (["--run-name", name], ["--out", name], ["--data", name], ["--resume", name]):
        result = run_main("train", *argv)
        assert result.returncode == 2 and "is not valid UTF-8" in result.stderr, argv
        assert "Traceback" not in result.stderr


@pytest.mark.backend_independent
def test_a_saved_record_passes_the_command_lines_checks():
    """from_saved and resolve share check_settings: a config.json whose settings contradict each other (edited by
    hand) is refused in one line naming the file, as the same flags on a command line are."""
    from mnist_vae.rundir import RunError

    for contradiction, message in (({"prior": "vampprior", "conditional": True}, "leave out --conditional"),
                                   ({"stochastic_layers": 2, "arch": "conv"}, "leave out --arch conv"),
                                   ({"early_stopping": 5}, "needs --validation N"),
                                   ({"log_var_min": 2.0, "log_var_max": -6.0}, "must be below --log-var-max")):
        with pytest.raises(RunError, match=f"run/config.json: .*{message}.*; the file was edited or damaged"):
            from_saved({**settings.DEFAULTS, "k": 1, **contradiction}, "run/config.json")
    assert from_saved({**settings.DEFAULTS, "k": 1, "prior": "vampprior"}).prior == "vampprior"
