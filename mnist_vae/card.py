"""README.md in every evaluated run folder: a model card in the Hugging Face convention (YAML metadata with the
model's metrics, then prose) saying what the model is, its data, budget and seed, its held-out numbers and what
they are, how to load it and its limits. Its numbers are report.html's own rows (report.key_numbers), so the
two cannot disagree. Pure Python: no Keras.
"""
import json
import os

from mnist_vae import families, markdown, messages, report
from mnist_vae.config import from_saved
from mnist_vae.rundir import write_text

# eval.json's keys that go into the card's metadata, with the name the metric gets there.
METRICS = (("nll_iw", "negative log-likelihood (importance-weighted bound)"),
           ("negative_elbo", "negative ELBO"), ("reconstruction_loss", "reconstruction term"),
           ("kl_loss", "KL term"), ("active_units", "active units"), ("mutual_information", "I(x; z)"))
# eval.json's "sample_quality" keys that go into the metadata, when the samples were scored.
SAMPLE_METRICS = (("frechet_distance", "Fréchet distance of samples to the test images, MNIST-classifier features"),
                  ("confident_share", "share of samples labelled confidently"),
                  ("coverage_kl", "digit coverage, KL from uniform, nats"))


def _yaml(value):
    """A scalar as YAML reads it back (JSON's strings and numbers are YAML's)."""
    return json.dumps(value)


def metadata(name, record, evaluation):
    """The card's YAML block: the library, tags and one result per metric (model-index)."""
    likelihood = messages.is_likelihood(record.get("binarize", "none"), record.get("likelihood", "bernoulli"))
    lines = ["---", "library_name: keras", "tags:", "- variational-autoencoder", "- mnist",
             f"- {_yaml(record.get('backend'))}", "datasets:", "- mnist", "model-index:", f"- name: {_yaml(name)}",
             "  results:", "  - task:", "      type: image-generation", "      name: density estimation",
             "    dataset:", "      type: mnist", "      name: MNIST", "      split: test", "    metrics:"]
    for key, what in METRICS:
        unit = {"active_units": "", "kl_loss": ", nats per image", "mutual_information": ", nats per image"}.get(
            key, ", nats per image" + ("" if likelihood else ", grey pixels: not a likelihood"))
        lines += [f"    - type: {key}", f"      name: {_yaml(what + unit)}", f"      value: {_yaml(evaluation[key])}"]
    scores = evaluation.get("sample_quality") or {}
    for key, what in SAMPLE_METRICS if "frechet_distance" in scores else ():
        lines += [f"    - type: {key}", f"      name: {_yaml(what)}", f"      value: {_yaml(scores[key])}"]
    return lines + ["---"]


def sample_quality_prose(evaluation):
    """What the card says of the samples' scores: their protocol, or why there are none."""
    scores = evaluation.get("sample_quality")
    if not scores:
        return "Sample quality was not measured for this model (`--no-sample-quality`)."
    if "skipped" in scores:
        return f"Sample quality was not measured: {markdown.text(scores['skipped'])}."
    return (f"Samples are scored in the features of a small MNIST classifier this project trains itself (test "
            f"accuracy {scores['classifier']['test_accuracy']:.2%}): {markdown.text(scores['protocol'])}. The Fréchet "
            "distance compares Gaussians fitted to those features (lower is better; the floor is what real digits "
            "get); the coverage says how evenly the samples spread over the ten digits. These numbers compare runs "
            "scored by the same classifier, not with papers that use other networks.")


def render(run_dir, record, metrics, evaluation):
    """The card as text (evaluation: eval.json's dict)."""
    name = os.path.basename(os.path.normpath(run_dir))
    rows = report.key_numbers(record, metrics, evaluation)
    pixels = messages.pixels_note(record.get("binarize", "none"), record.get("likelihood", "bernoulli"))
    described = markdown.text(
        f"a {record.get('arch')} VAE, {record.get('latent_dim')}-D latent space, "
        f"{'conditional on the digit label, ' if record.get('conditional') else ''}"
        f"{record.get('likelihood')} likelihood, trained on the "
        f"{'ELBO' if record.get('objective') == 'elbo' else 'IWAE bound, k = ' + str(record.get('k'))}")
    # Everything a user typed (the run's name, the data's path, the command) is escaped for Markdown.
    lines = metadata(name, record, evaluation) + [
        "", f"# {markdown.text(name)}", "", f"This is {described}, by this project's `train.py`.", "",
        "## Training", "",
        f"- Data: {markdown.text(record.get('data_source'))}: {record.get('train_images'):,} training images, "
        f"{record.get('test_images'):,} test images; {markdown.text(pixels)}.",
        f"- Budget: {messages.count(metrics.get('epochs') or 0, 'epoch')} at batch {record.get('batch_size')}, Adam at "
        f"{record.get('lr')}; seed {record.get('seed')}; backend {markdown.text(record.get('backend'))}.",
        f"- Reproduce: {markdown.code(record.get('command'))}", "",
        "## Held-out numbers", "",
        f"| | {markdown.cell(report.numbers_of(metrics, evaluation))} |", "| --- | --- |",
        *(f"| {markdown.cell(label)} | {markdown.cell(value)} |" for label, value in rows), "",
        "Each ± is one standard error over the test images: it says how the images differ, not how training "
        "runs would (one run, one seed). Quote a negative log-likelihood only from binarized pixels.", "",
        "## Sample quality", "", sample_quality_prose(evaluation), "",
        "## Use", "",
        "```python", "import keras", *families.loading_imports(from_saved(record)),
        "vae = keras.saving.load_model(\"model.keras\")  # any Keras backend; safe mode", "```", "",
        "`python export.py RUN` writes `decoder.onnx` (z to pixels) for ONNX Runtime.", "",
        "## Limits", "",
        "- MNIST digits, 28 x 28, grey levels in [0, 1]; nothing else was seen in training.",
        "- Samples from the prior can be blurry or smudged where the aggregate posterior and N(0, I) disagree; "
        "report.html shows them.", ""]
    return "\n".join(lines)


def write(run_dir, record, metrics, evaluation):
    """Write <run>/README.md (atomically) and return its path."""
    text = render(run_dir, record, metrics, evaluation)

    return write_text(os.path.join(run_dir, "README.md"), text)
