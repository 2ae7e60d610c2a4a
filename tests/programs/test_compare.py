"""compare.py: one figure and one row per run, with the settings that differ and the runs' own numbers."""
import csv
import json
import os
import shutil

import pytest
from conftest import TINY, run_main, run_program

pytestmark = [pytest.mark.backend_independent, pytest.mark.slow]  # reads run folders; one tiny run


def test_compare_shows_what_differs_and_each_runs_numbers(tmp_path, finished_run, small_npz):
    other = run_main("train", "--data", small_npz, "--epochs", "2", "--beta", "0.5", *TINY, "--out", tmp_path,
                     "--run-name", "half")
    assert other.returncode == 0, other.stderr
    runs = [finished_run, str(tmp_path / "half")]
    result = run_main("compare", *runs, "--out", tmp_path / "cmp")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "cmp" / "comparison.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    # Only beta differs between the two runs: it is the one setting shown.
    assert header == ["run", "beta", "epochs trained", "test loss", "reconstruction", "KL", "NLL (IW)", "k (NLL)",
                      "active units", "sample FD", "digit coverage KL"]
    for row, run in zip(rows, runs):
        metrics = json.load(open(os.path.join(run, "metrics.json")))
        evaluation = json.load(open(os.path.join(run, "eval.json")))
        config = json.load(open(os.path.join(run, "config.json")))
        assert row == [os.path.basename(run), str(config["beta"]), "2", f"{metrics['loss']:.2f}",
                       f"{metrics['reconstruction_loss']:.2f}", f"{metrics['kl_loss']:.2f}",
                       f"{evaluation['nll_iw']:.2f}", str(evaluation["iw_samples"]), str(evaluation["active_units"]),
                       f"{evaluation['sample_quality']['frechet_distance']:.2f}",
                       f"{evaluation['sample_quality']['coverage_kl']:.2f}"]
    markdown = open(tmp_path / "cmp" / "comparison.md").read()
    assert markdown in result.stdout and markdown.count("\n") == 4  # header, rule, two rows
    assert os.path.getsize(tmp_path / "cmp" / "comparison.png") > 10_000


def test_bad_run_folders_are_one_line_each(tmp_path, finished_run):
    result = run_main("compare", finished_run, tmp_path / "absent", tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'absent'}: no such run folder",
                                          f"error: {tmp_path}: not a run folder (no config.json)"]


def test_the_console_is_quiet_and_odd_inputs_are_refused_before_the_table(tmp_path, finished_run):
    import shutil

    result = run_program("compare.py", finished_run, "--out", tmp_path / "cmp")
    assert result.returncode == 0 and result.stderr == ""  # no start-up chatter of any framework
    for runs in ([finished_run, finished_run], [finished_run, os.path.join(finished_run, "..",
                                                                           os.path.basename(finished_run))]):
        result = run_main("compare", *runs, "--out", tmp_path / "cmp")
        assert result.returncode == 2 and result.stdout == "" and "is given twice" in result.stderr
        assert result.stderr.strip().splitlines()[-1].endswith("each run is one row")
    (tmp_path / "a-file").write_text("")
    result = run_main("compare", finished_run, "--out", tmp_path / "a-file")
    assert result.returncode == 1 and result.stdout == ""  # the error comes alone, before any table
    assert result.stderr.splitlines() == [f"error: --out {tmp_path / 'a-file'}: is a file, not a folder"]
    piped = tmp_path / "a|b"
    shutil.copytree(finished_run, piped)
    result = run_main("compare", piped, finished_run, "--out", tmp_path / "cmp")
    assert result.returncode == 0, result.stderr
    rows = open(tmp_path / "cmp" / "comparison.md").read().splitlines()
    assert rows[2].startswith("| a\\|b | ") and all(row.count(" | ") == rows[0].count(" | ") for row in rows)


@pytest.mark.slow
def test_compare_refuses_a_run_without_a_completed_epoch_and_never_mixes_two_models(tmp_path, finished_run):
    import compare

    empty = tmp_path / "empty"
    shutil.copytree(finished_run, empty)
    json.dump({"epochs": 0, "partial": True, "loss": None}, open(empty / "metrics.json", "w"))
    result = run_main("compare", empty, "--out", tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "no epoch has completed, so there is nothing to compare" in result.stderr
    # A run resumed further and stopped: its metrics are of epoch 1, its eval.json of the epoch-2 model.
    mixed = tmp_path / "mixed"
    shutil.copytree(finished_run, mixed)
    metrics = json.load(open(mixed / "metrics.json"))
    json.dump({**metrics, "epochs": 1, "partial": True}, open(mixed / "metrics.json", "w"))
    header, (row,) = compare.table([compare.read_run(str(mixed))])
    values = dict(zip(header, row))
    assert values["NLL (IW)"] == "" and values["epochs trained"] == "1 (stopped)"  # no epoch-2 NLL beside them
    assert compare.read_run(str(mixed))["history"]["loss"] == compare.read_run(str(finished_run))["history"]["loss"][:1]
    header, (row,) = compare.table([compare.read_run(str(finished_run))])
    evaluation = json.load(open(os.path.join(finished_run, "eval.json")))
    assert dict(zip(header, row))["k (NLL)"] == str(evaluation["iw_samples"])  # the NLL says its k


def test_the_table_shows_run_names_and_settings_as_typed_never_as_markdown(tmp_path, finished_run):
    from markdown_it import MarkdownIt

    hostile = str(tmp_path / "<img src=x onerror=alert(1)> *b* `c")
    shutil.copytree(finished_run, hostile)
    result = run_main("compare", finished_run, hostile, "--out", tmp_path / "cmp")
    assert result.returncode == 0, result.stderr
    rendered = MarkdownIt("commonmark").enable("table").render(open(tmp_path / "cmp" / "comparison.md").read())
    assert "<img" not in rendered and "<em>" not in rendered and "<code>" not in rendered
    assert "<td>&lt;img src=x onerror=alert(1)&gt; *b* `c</td>" in rendered
