"""mnist_vae/settings.py: random flags parse or exit 2 with a message, out-of-range values are one line, and a
preset's settings, overrides and reproduce command hold."""
import io
import json
import os
import shlex
import shutil

import numpy as np
import pytest
from conftest import run_main
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mnist_vae import presets, settings
from mnist_vae.presets import staged_passes

FLAGS = ["--epochs", "--batch-size", "--latent-dim", "--arch", "--hidden", "--lr", "--beta", "--seed",
         "--data", "--dataset", "--val-split", "--limit", "--jit", "--out", "--run-name", "--resume",
         "--deterministic", "--bogus"]

VALUES = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                   st.sampled_from(["dense", "conv", "mnist", "fashion_mnist", "auto", "on", "off", "", "-1",
                                    "1e-3", "0", "nan", "inf", "-inf", "1e400"]),
                   st.text(max_size=8))

ARGV = st.lists(st.one_of(st.sampled_from(FLAGS), VALUES), max_size=8)


@pytest.mark.backend_independent
@hypothesis_settings(max_examples=300, deadline=None)
@given(ARGV)
def test_random_flags_parse_or_exit_2_with_a_message(argv):
    stderr = io.StringIO()
    from contextlib import redirect_stderr

    try:
        with redirect_stderr(stderr):
            args, given_flags = settings.parse_args(argv)
    except SystemExit as e:
        assert e.code == 2
        assert "error: " in stderr.getvalue() and "Traceback" not in stderr.getvalue()
        return
    # Accepted: every value is in its range.
    assert args.epochs >= 1 and args.batch_size >= 1 and args.latent_dim >= 1 and args.hidden >= 1
    assert args.lr > 0 and np.isfinite(args.lr) and args.beta >= 0 and np.isfinite(args.beta)
    assert 0 < args.val_split < 1 and args.arch in ("dense", "conv") and args.seed >= 0
    assert given_flags <= set(vars(args))


@pytest.mark.backend_independent
@pytest.mark.parametrize("argv", [["--epochs", "nan"], ["--lr", "inf"], ["--val-split", "nan"], ["--beta", "1e400"]])
def test_non_finite_numbers_are_refused(argv):
    with pytest.raises(SystemExit) as e:
        settings.parse_args(argv)
    assert e.value.code == 2


def test_a_flag_beside_a_preset_overrides_that_setting_only():
    args, given = settings.parse_args(["--preset", "iwae-k5", "--batch-size", "100", "--stages", "6"])
    assert (args.batch_size, args.stages, args.k, args.hidden, args.adam_epsilon) == (100, 6, 5, "200,200", 1e-4)
    from mnist_vae.config import Config

    config = Config(**{**vars(args), "epochs": staged_passes(args.stages)})  # what train.py makes of --stages
    assert settings.reproduce_command(config) == "python train.py --preset iwae-k5 --batch-size 100 --stages 6"
    plain, _ = settings.parse_args(["--batch-size", "100"])
    assert (plain.preset, plain.hidden, plain.activation, plain.lr_schedule) == (None, 512, "relu", "constant")


def test_the_reproduce_command_replays_the_run_overrides_included():
    from mnist_vae.config import resolve

    for flags in (["--preset", "iwae-k50", "--k", "5"], ["--preset", "iwae-k5", "--objective", "elbo"],
                  ["--preset", "iwae-vae", "--stages", "3", "--beta", "0.5"], ["--objective", "iwae", "--k", "7"],
                  ["--preset", "pytorch-examples", "--epochs", "3", "--seed", "4"]):
        args, _ = resolve(flags + ["--backend", "tensorflow"])
        command = settings.reproduce_command(args)
        replayed, _ = resolve(shlex.split(command)[2:] + ["--backend", "tensorflow"])
        assert replayed == args, command


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


@pytest.mark.backend_independent
@pytest.mark.slow
def test_flags_and_settings_out_of_range_are_one_line(tmp_path, small_npz, finished_run):
    out = tmp_path / "out"
    for flags, code, message in (
            (["--seed", str(2**32)], 2, "--seed: must be >= 0 and < 4294967296"),
            (["--run-name", "../escape"], 2, "--run-name: must be a folder name without '/'"),
            (["--run-name", str(tmp_path / "abs")], 2, "--run-name: must be a folder name without '/'"),
            (["--hidden", "100000000"], 1, "--hidden 100000000 --latent-dim 2: the model would have"),
            (["--arch", "conv", "--latent-dim", "10000000"], 1, "--arch conv --latent-dim 10000000: the model would"),
            (["--epochs", "100000000000000000000"], 2, "--epochs: must be >= 1 and < 1000001"),
            (["--lr-schedule", "staged", "--stages", "100"], 2, "--stages: must be >= 1 and < 14"),
            (["--stages", "10000"], 2, "--stages: must be >= 1 and < 14")):
        result = run_main("train", "--data", small_npz, "--out", out, *flags)
        assert result.returncode == code and message in result.stderr.splitlines()[-1], (flags, result.stderr)
        assert "Traceback" not in result.stderr and (code == 2 or result.stderr.count("\n") == 1)
        assert not os.path.exists(out) or os.listdir(out) == []  # no run folder was made or left behind
    assert not os.path.exists(tmp_path / "escape") and not os.path.exists(tmp_path / "abs")
    for key, value in (("binarize", "weird"), ("latent_dim", "two"), ("lr", -1), ("preset", "evil")):
        run = tmp_path / f"bad-{key}"
        shutil.copytree(finished_run, run)
        config = json.load(open(run / "config.json"))
        json.dump({**config, key: value}, open(run / "config.json", "w"))
        before = {name: os.path.getmtime(run / name) for name in ("eval.json", "report.html")}
        for program, args in (("train", ["--resume", run, "--epochs", "3"]), ("evaluate", [run]),
                              ("compare", [run, "--out", tmp_path / "cmp"])):
            result = run_main(program, *args)
            assert result.returncode == 1 and result.stderr.count("\n") == 1, (key, program, result.stderr)
            assert str(run / "config.json") in result.stderr and repr(value) in result.stderr
        assert before == {name: os.path.getmtime(run / name) for name in before}  # nothing was written
