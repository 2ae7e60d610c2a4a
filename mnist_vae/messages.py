"""The lines a user reads in more than one place, each worded once: what the pixels make of the losses,
the grey-pixel warning, and how to continue a run."""
import math
import os
import shlex

PIXELS = {
    "none": "grey levels (--binarize none): the losses are training objectives, not likelihoods",
    "static": "binarized once (--binarize static): losses are bounds on a Bernoulli likelihood",
    "dynamic": "re-binarized every batch (--binarize dynamic): losses are bounds on a Bernoulli likelihood",
    "continuous-bernoulli": "grey levels under a continuous Bernoulli (--likelihood continuous-bernoulli): losses "
                            "are bounds on a true density of the grey images (nats per image; they may be negative)",
}
GREY_WARNING = ("Grey pixels (--binarize none): the reconstruction term is a cross-entropy against grey targets, "
                "not a likelihood, and these numbers cannot be compared with published NLLs on binarized MNIST "
                "(train with --binarize dynamic for that).")


# The console's shorter forms of the same facts (console.summary).
GREY_NLL = "a bound on a 'likelihood' of grey targets"


def console_pixels_note(binarize, likelihood="bernoulli"):
    if likelihood == "continuous-bernoulli":
        return "grey pixels under a continuous Bernoulli: bounds on a true density, may be negative"
    return "binarized pixels" if binarize != "none" else "GREY pixels: these are not likelihoods"


def pixels_note(binarize, likelihood="bernoulli"):
    """What the pixels are and what the losses then mean, in one line."""
    return PIXELS["continuous-bernoulli" if likelihood == "continuous-bernoulli" else binarize]


def is_likelihood(binarize, likelihood="bernoulli"):
    """Whether the run's reconstruction term is a true negative log-likelihood of its pixels."""
    return binarize != "none" or likelihood == "continuous-bernoulli"


def count(n, noun):
    """'1 epoch', '2 epochs', '1 pass', '3 passes'."""
    plural = noun + ("es" if noun.endswith("s") else "s")
    return f"{n:,} {noun if n == 1 else plural}"


def all_epochs(n, what="trained"):
    """'all 3 epochs are trained', 'its 1 epoch is trained'."""
    return f"all {count(n, 'epoch')} are {what}" if n != 1 else f"its 1 epoch is {what}"


def open_line(run_dir, files=None):
    """The last line of a run (and of evaluate.py): the one thing to open, and where the rest is listed."""
    written = f"{files} files in {shlex.quote(run_dir)}, each listed on its report; " if files else ""
    return (f"{written}open {shlex.quote(os.path.join(run_dir, 'report.html'))} (numbers and figures) or "
            f"{shlex.quote(os.path.join(run_dir, 'explorer.html'))} (the latent space, live)")


def model_of_epoch(epoch):
    """'the model of epoch 7', or what a model of unknown age is called."""
    return "the saved model (its epoch unknown)" if epoch is None else f"the model of epoch {epoch}"


def resume_command(run_dir, chief=True):
    """The command that continues a run (a non-chief worker's copy is not the run: its chief's folder is)."""
    folder = shlex.quote(run_dir) if chief else "CHIEF'S_RUN_FOLDER"
    return f"python train.py --resume {folder}"


def mutual_information_note(results):
    """What bounds the I(x; z) estimate, and a warning when this one fell outside them (few images, a 1-D
    code, a poorly fitted posterior: the estimate is noisy, not the quantity)."""
    ceiling = min(results["kl_loss"], math.log(results["images"]))
    if not 0 <= results["mutual_information"] <= ceiling:
        return (f"this estimate fell outside its bounds [0, {ceiling:.2f}] (0, the KL and log N): it is noisy "
                "here; read it as a rough figure")
    return f"0 = z ignores x; at most the KL, and log N = {math.log(results['images']):.2f}"


def kl_estimate_reason(results):
    """Why an evaluation's KL is a single-draw estimate (eval.json's kl_is_estimate)."""
    return ("two stochastic layers: no closed form" if results.get("stochastic_layers") == 2
            else "the learned prior has no closed form")


def stopped_early(chosen):
    """Why an early-stopped run trains no more, from early_stopping.summary's dict."""
    return (f"it stopped early after epoch {chosen['trained_epochs']}: the validation bound had not improved for "
            f"{count(chosen['patience'], 'epoch')} since its best, epoch {chosen['chosen_epoch']}, whose model it "
            "keeps")


def early_stopping_line(chosen):
    """The console's line on what early stopping decided at the end of a run (None without early stopping)."""
    if not chosen:
        return None
    if chosen["chosen_epoch"] is None:
        return (f"early stopping never judged an epoch (the KL warm-up's epochs are not judged, and the run "
                f"trained {count(chosen['trained_epochs'], 'epoch')}): the last epoch's model is the one evaluated "
                "and saved")
    if chosen["stopped_early"]:
        return f"early stopping: {stopped_early(chosen)}: the numbers below are epoch {chosen['chosen_epoch']}'s"
    return (f"early stopping did not stop the run; the numbers below are of epoch {chosen['chosen_epoch']}, the best "
            "on the validation slice")


def backend_line(config, devices):
    """What a run trains on, with a hint where a faster choice is at hand."""
    line = f"backend: {config.backend}" + ("" if devices.replicas == 1 else f", {devices.replicas} replicas")
    if config.arch == "conv" and config.backend == "jax" and config.jit != "off" and not devices.gpu:
        line += ("\nhint: XLA's transposed convolutions are slow on a CPU: --backend tensorflow trains the conv "
                 "model about 10x faster here")
    return line
