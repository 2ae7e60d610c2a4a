"""mnist_vae/card.py: the model card's numbers are eval.json's, in its metadata and in its table (the
report's own rows), and its metadata is YAML a model hub reads."""
import re

import pytest
import yaml

from mnist_vae import card, markdown, report, settings

pytestmark = pytest.mark.backend_independent

EVALUATION = {"negative_elbo": 101.234, "negative_elbo_stderr": 0.25, "reconstruction_loss": 80.5,
              "reconstruction_loss_stderr": 0.2, "kl_loss": 20.734, "kl_loss_stderr": 0.1, "nll_iw": 97.1,
              "nll_iw_stderr": 0.24, "iw_samples": 1000, "active_units": 17, "kl_per_dim": [1.0] * 20,
              "active_threshold": 0.01, "mutual_information": 7.5, "mutual_information_stderr": 0.01,
              "images": 10000, "epoch": 30, "likelihood": "bernoulli",
              "sample_quality": {"frechet_distance": 12.5, "frechet_distance_floor": 0.75, "confident_share": 0.91,
                                 "coverage_kl": 0.012, "confident": 0.9, "protocol": "10,000 samples against ...",
                                 "classifier": {"key": "abc", "test_accuracy": 0.9916}}}
CONFIG = {**settings.DEFAULTS, "latent_dim": 20, "binarize": "dynamic", "backend": "jax", "epochs": 30, "k": 1,
          "data_source": "/data/mnist", "train_images": 60000, "test_images": 10000,
          "command": "python train.py --latent-dim 20 --binarize dynamic | tee log"}


def test_the_cards_numbers_are_eval_jsons_and_the_reports_rows(tmp_path):
    text = card.render(str(tmp_path / "z20"), CONFIG, {"epochs": 30, "partial": False}, EVALUATION)
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["library_name"] == "keras" and "jax" in meta["tags"] and meta["datasets"] == ["mnist"]
    metrics = meta["model-index"][0]["results"][0]["metrics"]
    assert {m["type"]: m["value"] for m in metrics} == {
        **{key: EVALUATION[key] for key, _ in card.METRICS},
        **{key: EVALUATION["sample_quality"][key] for key, _ in card.SAMPLE_METRICS}}
    assert "test accuracy 99.16%): 10,000 samples against ..." in text.split("## Sample quality")[1]
    assert all("not a likelihood" not in m["name"] for m in metrics)  # binarized pixels: a likelihood
    table = text.split("## Held-out numbers")[1].split("\n\n")[1].splitlines()[2:]
    rows = report.key_numbers(CONFIG, {"epochs": 30}, EVALUATION)
    assert len(table) == len(rows)
    for line, (label, value) in zip(table, rows):
        assert line == f"| {markdown.cell(label)} | {markdown.cell(value)} |"  # escaped (test_markdown.py)
    assert "| NLL estimate, k = 1000 importance samples | 97.10 ± 0.24 |" in table
    assert any(line.startswith("| samples: Fréchet distance") and line.endswith("| 12.50 |") for line in table)
    assert "`python train.py --latent-dim 20 --binarize dynamic | tee log`" in text
    assert re.search(r"60,000 training images, 10,000 test images", text)


def test_grey_pixels_are_named_as_not_a_likelihood(tmp_path):
    grey = {**CONFIG, "binarize": "none"}
    meta = yaml.safe_load(card.render(str(tmp_path / "g"), grey, {"epochs": 30}, EVALUATION).split("---\n")[1])
    names = {m["type"]: m["name"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert "not a likelihood" in names["nll_iw"] and "not a likelihood" not in names["kl_loss"]


def test_the_use_section_imports_what_the_saved_model_needs(tmp_path):
    def use(config):
        text = card.render(str(tmp_path / "u"), config, {"epochs": 30}, EVALUATION)
        return text.split("## Use")[1].split("```")[1]

    assert "mnist_vae" not in use(CONFIG)
    assert "from mnist_vae import vampprior" in use({**CONFIG, "prior": "vampprior"})
    assert "from mnist_vae import two_layer" in use({**CONFIG, "stochastic_layers": 2})
