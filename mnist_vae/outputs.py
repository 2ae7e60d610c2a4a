"""What a run earned, written into its folder: model.keras and eval.json (complete runs), the figures and
explorer.html, report.html, and metrics.json last (its "partial": false marks a complete run)."""
import os
import time

from mnist_vae import card, checkpoints, data, evaluation, explorer, figures, messages, report
from mnist_vae.rundir import atomic_write, read_state, write_json
from mnist_vae.runfolder import RunFolder
from model import LOSS_TERMS


def write_outputs(vae, run_dir, splits, rows, settings, record, complete, frames=None, seconds=None):
    """Partial runs use the model of the last completed epoch and report that epoch's test numbers.
    Returns (metrics, eval results or None, {name: path written}, {figure: why it was skipped}). seconds: a dict
    that gets the time each part took ("saving the model", "evaluation", "figures and pages")."""
    seconds = {} if seconds is None else seconds
    began = time.time()
    written = {name: os.path.join(run_dir, name) for name in ("config.json", "history.csv")}
    x_test = data.as_float(splits.x_test)
    if complete:
        epoch = (checkpoints.restore_best(vae, run_dir) if settings.early_stopping else None) or len(rows)
        written["model"] = atomic_write(os.path.join(run_dir, "model.keras"), vae.save)  # the best epoch's
        seconds["saving the model"], began = time.time() - began, time.time()
        results, posterior, written["eval"] = write_evaluation(
            vae, run_dir, splits, settings.iw_samples, epoch, settings.binarize,
            sample_quality=not settings.no_sample_quality, extra=_chosen(rows, settings))
        metrics = _metrics_of(results)
        seconds["evaluation"], began = time.time() - began, time.time()
    else:
        metrics, results = _last_epoch_metrics(rows), None
        state = read_state(run_dir)
        if state:  # the model of the last completed epoch, never a half-trained or diverged one
            checkpoints.restore(vae, run_dir, state)
        posterior = evaluation.encode(vae, x_test, splits.y_test) if rows else None
    last = rows[-1] if rows else {}
    metrics_file = {
        **metrics, "units": "nats per image", "split": "test", "test_images": len(splits.x_test),
        "epochs": len(rows), "partial": not complete, "kl_weight_last_epoch": last.get("kl_weight"),
        "binarize": settings.binarize, "likelihood": settings.likelihood,
        "pixels": messages.pixels_note(settings.binarize, settings.likelihood),
        # the committed epochs' wall time, over every session of a resumed run (None: a checkpoint without it)
        "training_seconds": (read_state(run_dir) or {}).get("training_seconds"),
    }
    skipped = {}
    if rows:
        pages, skipped = write_figures_and_report(vae, run_dir, x_test, splits.y_test, posterior, rows, record,
                                                  metrics_file, results, frames)
        written.update(pages)
    else:
        written["report"] = report.write(run_dir, record, metrics_file, results, rows,
                                         _status(run_dir, record, metrics_file, results))
    written["metrics"] = write_json(os.path.join(run_dir, "metrics.json"), metrics_file)
    seconds["figures and pages"] = time.time() - began
    return metrics, results, written, skipped


def _chosen(rows, settings):
    """eval.json's record of what --early-stopping chose ({} without it)."""
    from mnist_vae import early_stopping

    if not settings.early_stopping:
        return {}
    return {"early_stopping": early_stopping.summary(rows, settings.early_stopping, settings.kl_warmup)}


def write_evaluation(vae, run_dir, splits, iw_samples, epoch, binarize, max_images=None, sample_quality=True,
                     extra=None):
    """The held-out evaluation of the model of `epoch` (evaluation.evaluate_model on the first max_images test
    images, or all) and, unless sample_quality is False, its samples' quality (evaluation.sample_quality), written
    to <run>/eval.json (eval-firstN.json for part of the test set): the one writer of those files, for train.py and
    evaluate.py. extra: more to record (what early stopping chose). Returns (results, posterior, path)."""
    x_test = data.as_float(splits.x_test[:max_images])
    y_test = None if splits.y_test is None else splits.y_test[:max_images]
    results, posterior = evaluation.evaluate_model(vae, x_test, iw_samples, labels=y_test)
    results.update({"epoch": epoch, "binarize": binarize, "data": splits.source, **(extra or {})})
    if sample_quality:
        results["sample_quality"] = evaluation.sample_quality(vae, splits.grey)
        if "seconds" in results["sample_quality"]:
            results["seconds_by_part"]["sample_quality"] = results["sample_quality"]["seconds"]
            results["seconds"] = round(results["seconds"] + results["sample_quality"]["seconds"], 2)
    name = f"eval-first{len(x_test)}.json" if len(x_test) < len(splits.x_test) else "eval.json"
    return results, posterior, write_json(os.path.join(run_dir, name), results)


def write_figures_and_report(vae, run_dir, x_test, y_test, posterior, rows, record, metrics, results, frames=None):
    """Every figure, explorer.html, report.html and (for an evaluated model) the model card README.md, for
    train.py and evaluate.py alike. Returns
    ({name: path written}, {figure: why it was skipped})."""
    written, skipped = figures.save_all(vae, x_test, y_test, checkpoints.history_columns(rows) if rows else None,
                                        run_dir, posterior, seed=record.get("seed", 0), frames=frames)
    written["explorer"] = explorer.write(run_dir, vae, posterior["z_mean"], y_test, x_test,
                                         about=figures.describe(vae))
    if results:  # an evaluated model: its card, from the report's own rows (before the report, which lists it)
        written["card"] = card.write(run_dir, record, metrics, results)
    written["report"] = report.write(run_dir, record, metrics, results, rows,
                                     _status(run_dir, record, metrics, results))
    return written, skipped


def _status(run_dir, record, metrics, results):
    """report.html's line of where the run stands (its epochs, the model's, and how training ended)."""
    return RunFolder(run_dir).status(metrics, results, planned=record.get("epochs"))


def _metrics_of(results):
    """metrics.json's numbers from the held-out evaluation: metrics.json, eval.json and the console agree."""
    return {"loss": results["negative_elbo"], **{k: results[k] for k in LOSS_TERMS[1:]},
            "loss_is": "the negative ELBO: reconstruction + KL at weight 1 (whatever --beta and the warm-up)",
            "kl_weight_in_loss": 1.0}


def _last_epoch_metrics(rows):
    last = rows[-1] if rows else {}
    return {**{k: last.get("val_" + k) for k in LOSS_TERMS},
            "loss_is": "the last completed epoch's test loss: reconstruction + kl_weight_in_loss x KL",
            "kl_weight_in_loss": last.get("kl_weight")}
