"""mnist_vae/report.py: report.html shows the run's own images, numbers and command, says whose numbers they
are, and is refreshed by evaluate.py."""
import html.parser
import json
import os
import shlex
import shutil

import pytest
from conftest import run_main

from mnist_vae.runfolder import RunFolder

pytestmark = pytest.mark.backend_independent


class Page(html.parser.HTMLParser):
    """The images, the numbers (data-source, data-key, data-value) and the <pre> text of a page."""

    def __init__(self, text):
        super().__init__()
        self.images, self.numbers, self.pre, self._in_pre = [], [], "", False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if "data-value" in attrs:
            self.numbers.append((attrs["data-source"], attrs["data-key"], float(attrs["data-value"])))
        self._in_pre = tag == "pre"

    def handle_data(self, data):
        if self._in_pre:
            self.pre += data

    def handle_endtag(self, tag):
        self._in_pre = False


def lookup(numbers, dotted_key):
    """numbers["a"]["b"] for "a.b"."""
    for part in dotted_key.split("."):
        numbers = numbers[part]
    return numbers


def read(run, name):
    with open(os.path.join(run, name)) as f:
        return json.load(f) if name.endswith(".json") else f.read()


def test_a_report_of_an_older_model_says_whose_numbers_it_shows(finished_run):
    from mnist_vae import report

    config = json.load(open(os.path.join(finished_run, "config.json")))
    evaluation = {**json.load(open(os.path.join(finished_run, "eval.json"))), "epoch": 4}
    metrics = {"epochs": 10, "partial": True}
    status = RunFolder(finished_run).status(metrics, evaluation, planned=40)
    page = report.render(finished_run, {**config, "epochs": 40}, metrics, evaluation, [], status)
    assert "stopped after 10 of 40 epochs" in page
    assert "The numbers and figures below are of the model of epoch 4 (evaluate.py --older-model)" in page
    assert "model of epoch 4)" in page  # each number names its model


@pytest.mark.slow
def test_the_report_shows_the_runs_own_images_numbers_and_command(finished_run):
    page = Page(read(finished_run, "report.html"))
    assert len(page.images) == 8  # every figure of a 2-D run, and the GIF
    for src in page.images:
        assert not os.path.isabs(src) and "/" not in src and os.path.getsize(os.path.join(finished_run, src)) > 0
    files = {name: read(finished_run, name) for name in ("eval.json", "metrics.json")}
    keys = {(source, key) for source, key, _ in page.numbers}
    assert {("eval.json", k) for k in ("negative_elbo", "reconstruction_loss", "kl_loss", "nll_iw",
                                       "active_units")} <= keys
    for source, key, value in page.numbers:
        assert value == lookup(files[source], key), (source, key)
    # eval.json and metrics.json agree (one held-out evaluation), so the page agrees with both.
    assert files["metrics.json"]["loss"] == files["eval.json"]["negative_elbo"]
    # The command parses as train.py's flags and gives the run's settings.
    from mnist_vae import settings

    words = shlex.split(page.pre)
    assert words[:2] == ["python", "train.py"]
    args = settings.build_parser().parse_args(words[2:])
    config = read(finished_run, "config.json")
    for name in ("epochs", "hidden", "batch_size", "iw_samples", "data", "seed", "latent_dim", "binarize", "lr"):
        assert getattr(args, name) == config[name], name
    text = read(finished_run, "report.html")
    assert "complete: 2 epochs" in text and "Grey pixels (--binarize none)" in text  # the run is grey
    # The latent-space explorer is written beside the figures, and the report links to it.
    assert '<a href="explorer.html">' in text and os.path.getsize(os.path.join(finished_run, "explorer.html")) > 0
    # How long it took: the checkpoint's training time, which metrics.json repeats, and the evaluation's.
    from mnist_vae import report

    state = read(finished_run, os.path.join("checkpoint", "state.json"))
    assert files["metrics.json"]["training_seconds"] == state["training_seconds"] > 0
    assert report.time_line(state["training_seconds"], files["eval.json"]) in html.unescape(text)


@pytest.mark.slow
def test_evaluate_refreshes_the_report_and_a_stopped_run_says_so(tmp_path, finished_run):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    os.remove(run / "report.html")
    os.remove(run / "explorer.html")
    assert run_main("evaluate", run, "--iw-samples", "7").returncode == 0
    assert os.path.getsize(run / "explorer.html") > 0  # evaluate.py writes the explorer anew
    page = Page(read(run, "report.html"))
    assert ("eval.json", "nll_iw", read(run, "eval.json")["nll_iw"]) in page.numbers
    assert "NLL estimate, k = 7 importance samples" in read(run, "report.html")
    from mnist_vae import report  # a stopped run's page: the numbers of its last completed epoch, and how to go on

    config, rows = read(run, "config.json"), [{"epoch": 1, "loss": 500.0, "val_loss": 480.5}]
    metrics = {"loss": 480.5, "reconstruction_loss": 470.0, "kl_loss": 10.5, "epochs": 1, "partial": True}
    text = report.render(str(run), config, metrics, None, rows, RunFolder(run).status(metrics, None, planned=2))
    assert "stopped after 1 of 2 epochs; python train.py --resume continues it" in text
    assert ("metrics.json", "loss", 480.5) in Page(text).numbers
