"""What a run earned, written into its folder: model.keras and eval.json (complete runs), the figures and
explorer.html, report.html, and metrics.json last (its "partial": false marks a complete run)."""
import os
import time

from mnist_vae import checkpoints, data, evaluation, figures, messages, report
from mnist_vae.rundir import atomic_write, write_json
from model import LOSS_TERMS


def write_outputs(vae, run_dir, splits, rows, settings, config, complete, frames=None, seconds=None):
    """Partial runs use the model of the last completed epoch and report that epoch's test numbers.
    Returns (metrics, eval results or None, {name: path, or why it was skipped}). seconds: a dict that gets
    the time each part took ("saving the model", "evaluation", "figures and pages")."""
    seconds = {} if seconds is None else seconds
    began = time.time()
    written = {name: os.path.join(run_dir, name) for name in ("config.json", "history.csv")}
    x_test = data.as_float(splits.x_test)
    if complete:
        written["model"] = atomic_write(os.path.join(run_dir, "model.keras"), vae.save)
        seconds["saving the model"], began = time.time() - began, time.time()
        metrics, results, posterior = _evaluate(vae, x_test, splits, rows, settings)
        written["eval"] = write_json(os.path.join(run_dir, "eval.json"), results)
        seconds["evaluation"], began = time.time() - began, time.time()
    else:
        metrics, results = _last_epoch_metrics(rows), None
        state = checkpoints.read_state(run_dir)
        if state:  # the model of the last completed epoch, never a half-trained or diverged one
            checkpoints.restore(vae, run_dir, state)
        posterior = evaluation.encode(vae, x_test, splits.y_test) if rows else None
    if rows:
        written.update(figures.save_all(vae, x_test, splits.y_test, checkpoints.history_columns(rows), run_dir,
                                        posterior, seed=settings.seed, frames=frames))
    last = rows[-1] if rows else {}
    metrics_file = {
        **metrics, "units": "nats per image", "split": "test", "test_images": len(splits.x_test),
        "epochs": len(rows), "partial": not complete, "kl_weight_last_epoch": last.get("kl_weight"),
        "binarize": settings.binarize, "likelihood": settings.likelihood,
        "pixels": messages.pixels_note(settings.binarize, settings.likelihood),
    }
    written["report"] = report.write(run_dir, config, metrics_file, results, rows)
    written["metrics"] = write_json(os.path.join(run_dir, "metrics.json"), metrics_file)
    seconds["figures and pages"] = time.time() - began
    return metrics, results, written


def _evaluate(vae, x_test, splits, rows, settings):
    """One held-out evaluation: metrics.json, eval.json and the console all report its numbers."""
    results, posterior = evaluation.evaluate_model(vae, x_test, settings.iw_samples, labels=splits.y_test)
    results.update({"epoch": len(rows), "binarize": settings.binarize, "data": splits.source})
    metrics = {"loss": results["negative_elbo"], **{k: results[k] for k in LOSS_TERMS[1:]},
               "loss_is": "the negative ELBO: reconstruction + KL at weight 1 (whatever --beta and the warm-up)",
               "kl_weight_in_loss": 1.0}
    return metrics, results, posterior


def _last_epoch_metrics(rows):
    last = rows[-1] if rows else {}
    return {**{k: last.get("val_" + k) for k in LOSS_TERMS},
            "loss_is": "the last completed epoch's test loss: reconstruction + kl_weight_in_loss x KL",
            "kl_weight_in_loss": last.get("kl_weight")}
