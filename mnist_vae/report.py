"""report.html: one page per run that gathers its numbers, figures, history and settings.

Self-contained but for the run's own images, linked by relative paths: the folder can be copied,
zipped or opened offline. train.py writes it at the end of every run (also a stopped one), evaluate.py
refreshes it. Every number on it carries data-source and data-value attributes with the exact value
from metrics.json or eval.json, so tests (and scripts) can check the page against the files.
"""
import os
from dataclasses import dataclass

from mnist_vae import messages, presets
from mnist_vae.pages import Markup, escape
from mnist_vae.pages import render as render_page
from mnist_vae.progress import duration
from mnist_vae.rundir import write_text
from mnist_vae.settings import preset_overrides

# Each figure the run may have, with what to look for in it.
FIGURES = (
    ("loss.png", "Loss per epoch, training (circles) against held-out test images (squares), for the loss and "
                 "its two terms. Look for: curves still falling (train longer), test rising while training "
                 "falls (over-fitting), a KL near 0 (the posterior collapsed onto the prior)."),
    ("reconstructions.png", "Ten test digits (top) and their reconstructions decoded from z_mean (bottom), each "
                            "pixel the decoder's mean. Look for: which details the code keeps; blur is the "
                            "decoder's mean (a continuous Bernoulli's mean is less extreme than sigmoid(logit))."),
    ("samples.png", "Digits decoded from 64 random draws z ~ N(0, I). Look for: digit-like samples all over; "
                    "smudges mean the prior and the aggregate posterior disagree."),
    ("latent_scatter.png", "Every test image's z_mean, coloured by its digit (more than two latent "
                           "dimensions: the first two principal components). Look for: clusters per digit "
                           "and a cloud roughly like N(0, I)."),
    ("latent_manifold.png", "A 20 x 20 grid of latent points decoded (over the Gaussian quantiles, or along "
                            "the two principal directions). Look for: smooth morphing between digits; "
                            "blank or repeated regions the decoder never learned."),
    ("interpolation.png", "Straight lines in latent space between pairs of test digits. Look for: every "
                          "intermediate looks like a digit (a smooth, well-used latent space)."),
    ("kl_per_dim.png", "The mean KL of each latent dimension; active units in colour. Look for: dimensions "
                       "with KL near 0 carry no information (inactive)."),
    ("progress.gif", "The same 36 latent draws decoded after every epoch. Look for: how fast the samples "
                     "become digits, and when they stop changing."),
    ("nll_by_stage.png", "A staged run's test NLL (k = 1000 importance samples, the first 2,000 test images) at the "
                         "end of each stage, against passes on a log scale. Look for: how far the run got, and "
                         "whether it was still falling when it stopped (the final evaluation, on every test "
                         "image, is the run's number)."),
)
# What changes for a conditional model (--conditional): the label carries the digit, z the style.
CONDITIONAL_FIGURES = {
    "samples.png": "Samples on request: one row per digit label, each column one draw z ~ N(0, I) decoded with every "
                   "label. Look for: each row shows its digit; down a column the digit changes while the style "
                   "(slant, thickness) stays.",
    "latent_scatter.png": "Every test image's z_mean, coloured by its digit. For a conditional model, look for "
                          "digits mixed together: the label carries the digit, so z need only hold the style.",
    "latent_manifold.png": "One panel per digit label: the same 8 x 8 grid of latent points decoded with each label. "
                           "Look for: the same style varying the same way across panels.",
    "interpolation.png": "Straight lines between pairs of test digits' codes, the label moving from one digit's "
                         "one-hot to the other's along with z. Look for: a smooth change of digit and style.",
}
# Every file a run folder may hold, with what it is: the report lists those the run has.
FILES = (
    ("report.html", "this page"),
    ("explorer.html", "the latent space, live in the browser"),
    ("config.json", "every setting, the data's source, sizes and fingerprint, the software's versions"),
    ("history.csv", "the loss terms per epoch, training and held out (a staged run: the test NLL at each stage's end)"),
    ("metrics.json", "the final test numbers; \"partial\": false marks a complete run"),
    ("eval.json", "the held-out evaluation (evaluate.py): ELBO terms, NLL, active units, I(x; z), the samples' scores"),
    ("model.keras", "the whole VAE: import model, then keras.saving.load_model"),
    *((name, "figure, above") for name, _ in FIGURES),
    ("checkpoint", "the last completed epoch's weights and optimizer state, for --resume"),
    ("tensorboard", "TensorBoard's logs (tensorboard --logdir)"),
    ("decoder.onnx", "the decoder as ONNX (export.py): z (and label) to logits and pixel_means"),
    ("README.md", "the model card: what the model is, its numbers, how to load it, its limits"),
)
TERMS = (("negative_elbo", "loss", "negative ELBO"), ("reconstruction_loss", "reconstruction_loss", "reconstruction"),
         ("kl_loss", "kl_loss", "KL"))


@dataclass(frozen=True)
class Number:
    """A number the report (and the model card) shows: its file and key, its value and standard error."""
    source: str
    key: str
    value: float
    digits: int = 2
    stderr: float = None

    def __str__(self):
        return f"{self.value:.{self.digits}f}" + (f" ± {self.stderr:.{self.digits}f}" if self.stderr is not None
                                                   else "")

    def cell(self):
        return Markup(f'<td data-source="{escape(self.source)}" data-key="{escape(self.key)}" '
                      f'data-value="{escape(repr(self.value))}">{escape(str(self))}</td>')


def _number(source, key, value, digits=2, stderr=None):
    return Number(source, key, value, digits, stderr)


def _table(header, rows):
    """An HTML table; each cell is text (escaped) or a Number (with its source in data- attributes). In a box of
    its own that scrolls sideways when the table is wider than the page (many columns, a long path)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell.cell() if isinstance(cell, Number) else f"<td>{escape(cell)}</td>"
                                    for cell in row) + "</tr>" for row in rows)
    return Markup(f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')


def render(run_dir, record, metrics, evaluation, history, status):
    """The page as text. record, metrics: the run's dicts; evaluation: eval.json's dict or None; history:
    the rows of history.csv (dicts of numbers); status: the line saying where the run stands
    (runfolder.RunFolder.status)."""
    binarize = record.get("binarize", "none")
    grey = binarize == "none" and not is_density(record, evaluation)
    warning = Markup(f'<p class="warning">{escape(messages.GREY_WARNING)}</p>' if grey else "")
    captions = {**dict(FIGURES), **(CONDITIONAL_FIGURES if record.get("conditional") else {})}
    figures = Markup("".join(
        f'<figure><img src="{escape(file)}" alt="{escape(file)}"><figcaption><b>{escape(file)}</b>: '
        f'{escape(caption)}</figcaption></figure>'
        for file, caption in captions.items() if os.path.isfile(os.path.join(run_dir, file))))
    explorer = Markup('<p class="explorer"><a href="explorer.html">explorer.html</a>: move through the latent '
                      'space and watch the decoder draw (opens offline, from the file).</p>'
                      if os.path.isfile(os.path.join(run_dir, "explorer.html")) else "")
    columns = list(dict.fromkeys(c for row in history for c in row))  # a staged run's NLL: at stage ends only
    history_table = _table(columns, [[f"{row[c]:.4g}" if isinstance(row.get(c), float) else str(row.get(c, ""))
                                      for c in columns] for row in history])
    settings = {k: v for k, v in record.items() if k not in ("versions", "command")}
    return render_page(
        "report", name=os.path.basename(os.path.normpath(run_dir)), status=status, explorer=explorer,
        command=record.get("command", ""),
        numbers=_table(("", numbers_of(metrics, evaluation)), key_numbers(record, metrics, evaluation)),
        warning=warning, figures=figures, history=history_table,
        settings=_table(("setting", "value"), [[k, str(v)] for k, v in settings.items()]),
        files=_table(("file", "what it holds"), [[name, what] for name, what in FILES if name in (
            "report.html", "metrics.json") or os.path.exists(os.path.join(run_dir, name))]),
        versions=", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items()))


def is_density(record, evaluation=None):
    """Whether the run's numbers bound a density of grey pixels (the continuous Bernoulli)."""
    return (evaluation or {}).get("likelihood", record.get("likelihood")) == "continuous-bernoulli"


def numbers_of(metrics, evaluation):
    """The key numbers' column title: which model they come from."""
    if evaluation:
        return f"value (held-out images, {messages.model_of_epoch(evaluation.get('epoch', metrics.get('epochs')))})"
    return f"value (held-out images, the last completed epoch: {metrics.get('epochs')})"


def early_stopping_rows(chosen):
    """What --early-stopping chose (eval.json's "early_stopping") as a key-number row; none without it."""
    if not chosen:
        return []
    trained = messages.count(chosen["trained_epochs"], "epoch")
    if chosen["chosen_epoch"] is None:  # a KL warm-up longer than the run: no epoch was judged
        return [["early stopping (--early-stopping, on the validation slice)",
                 f"never engaged: no epoch judged of {trained} trained (a KL warm-up's epochs are not judged); the "
                 "last epoch's model is shown"]]
    return [["early stopping (--early-stopping, on the validation slice)",
             f"epoch {chosen['chosen_epoch']} chosen (validation loss {chosen['best_validation_loss']:.2f}) of "
             f"{trained} trained, patience {chosen['patience']}" + ("; stopped early" if chosen["stopped_early"]
                                                                     else "")]]


def sample_quality_rows(scores):
    """The samples' scores (eval.json's "sample_quality") as key-number rows; none when they were not measured."""
    if not scores:
        return []
    if "skipped" in scores:
        return [["sample quality", f"not measured: {scores['skipped']}"]]

    def number(key, digits=2):
        return _number("eval.json", f"sample_quality.{key}", scores[key], digits=digits)

    rows = [["samples: Fréchet distance to the test images in a reference classifier's features (lower is better)",
             number("frechet_distance")],
            ["its floor: the same distance from training images", number("frechet_distance_floor")],
            [f"samples labelled confidently (top class probability ≥ {scores['confident']}), share",
             number("confident_share", 3)],
            ["digit coverage: KL of the digits drawn from uniform, nats (0: all ten equally often; 2.30: one digit)",
             number("coverage_kl", 3)]]
    if "requested_digit_share" in scores:
        rows.append(["samples the classifier reads as the digit asked for, share", number("requested_digit_share", 3)])
    classifier = scores["classifier"]
    rows.append(["sample-quality protocol", f"{scores['protocol']}; the classifier's test accuracy "
                 f"{classifier['test_accuracy']:.2%} (cached as {classifier['key']})"])
    return rows


def key_numbers(record, metrics, evaluation):
    """The rows of the key numbers, each (what it is, a Number or a line of text): report.html and the model
    card show these same rows."""
    density = is_density(record, evaluation)
    numbers = []
    if evaluation:
        for key, _, label in TERMS:
            if key == "kl_loss" and evaluation.get("kl_is_estimate"):
                label = f"KL, a single-draw ESTIMATE ({messages.kl_estimate_reason(evaluation)})"
            numbers.append([f"{label} (test, nats per image, {messages.model_of_epoch(evaluation.get('epoch'))})",
                            _number("eval.json", key, evaluation[key], stderr=evaluation[key + "_stderr"])])
        numbers.append([f"NLL estimate, k = {evaluation['iw_samples']} importance samples",
                        _number("eval.json", "nll_iw", evaluation["nll_iw"], stderr=evaluation["nll_iw_stderr"])])
        numbers.append([f"active units, of {len(evaluation['kl_per_dim'])} (Var of z_mean > "
                        f"{evaluation['active_threshold']})",
                        _number("eval.json", "active_units", evaluation["active_units"], digits=0)])
        information = messages.mutual_information_note(evaluation)
        numbers.append([f"mutual information I(x; z) under the encoder ({information})",
                        _number("eval.json", "mutual_information", evaluation["mutual_information"],
                                stderr=evaluation["mutual_information_stderr"])])
        numbers += sample_quality_rows(evaluation.get("sample_quality"))
        numbers += early_stopping_rows(evaluation.get("early_stopping"))
    else:
        for _, key, label in TERMS:
            if metrics.get(key) is not None:
                numbers.append([f"{label} (test, the last completed epoch: {metrics.get('epochs')})",
                                _number("metrics.json", key, metrics[key])])
    if record.get("preset"):  # the published figure this run is to be held against
        overrides = preset_overrides(record)
        numbers.append(["published recipe", presets.published_line(record["preset"], overrides)])
        if evaluation and not overrides:
            numbers.append(["beside the published figure", presets.compared_line(record["preset"], evaluation)])
    schedule = presets.schedule_line(record.get("lr", 0), record.get("lr_schedule", "constant"),
                                     record.get("stages", presets.PAPER_STAGES), record.get("epochs", 1))
    if schedule:
        numbers.append(["learning-rate schedule", schedule])
    if metrics.get("training_seconds") is not None:
        numbers.append(["wall time", time_line(metrics["training_seconds"], evaluation)])
    numbers.append(["binarization", f"--binarize {record.get('binarize', 'none')}"])
    numbers.append(["training objective", "ELBO" if record.get("objective", "elbo") == "elbo" else
                    f"IWAE bound, k = {record.get('k')} samples per image (history's loss column; its other "
                    "columns are the ELBO's terms)"])
    if record.get("conditional"):
        numbers.append(["model", "conditional on the digit label: the numbers bound log p(x | label)"])
    numbers.append(["likelihood p(x|z)", "continuous Bernoulli: the numbers bound a true density of the grey "
                    "images (nats per image; they may be negative)" if density else "Bernoulli"])
    return numbers


def time_line(training_seconds, evaluation=None):
    """How long the run took: its training over every session (a --resume included), then its evaluation."""
    return (f"training {duration(training_seconds)} (the completed epochs, every session counted)"
            + (f"; evaluation {duration(evaluation['seconds'])}" if evaluation and "seconds" in evaluation else ""))


def write(run_dir, record, metrics, evaluation, history, status):
    """Write <run>/report.html (atomically) and return its path."""
    page = render(run_dir, record, metrics, evaluation, history, status)

    return write_text(os.path.join(run_dir, "report.html"), page)
