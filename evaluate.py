"""Evaluate a trained run on its held-out images: ELBO terms, the importance-weighted NLL, active units.

    python evaluate.py outputs/RUN                      # k = 1000 importance samples per image
    python evaluate.py outputs/RUN --iw-samples 5000    # as in the papers
    python evaluate.py outputs/RUN --max-images 500     # a quick look

Reloads model.keras and the run's config (data source, binarization), writes eval.json and the
figures into the run folder, and prints a table. All values are nats per image.
"""
import argparse
import math
import os
import sys

from mnist_vae import backends, cli, evaluation, messages, settings
from mnist_vae.rundir import RunError, read_json


def parse_args(argv=None):
    from mnist_vae.cli import number_in_range

    p = argparse.ArgumentParser(description="Evaluate a trained run on its held-out images.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by train.py")
    p.add_argument("--iw-samples", type=number_in_range(int, 1), default=settings.DEFAULTS["iw_samples"],
                   help="importance samples per image (papers: 5000)")
    p.add_argument("--max-images", type=number_in_range(int, 1), default=None,
                   help="evaluate only the first N held-out images (written to eval-firstN.json; the run's "
                        "eval.json and figures stay as they are)")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="where the run's data is now, if it has moved since training (default: the saved path)")
    p.add_argument("--older-model", action="store_true",
                   help="evaluate model.keras even when the run's checkpoint has trained further")
    backends.add_backend_flag(p)
    return p.parse_args(argv)


def run(args):
    from mnist_vae.rundir import RunLock
    from mnist_vae.stopping import SignalGuard

    backend = backends.select_backend(args.backend or backends.default_backend())
    config = settings.saved_config(args.run_dir)
    backends.start_keras()
    # Every file is written atomically: a signal leaves each one as it was or complete.
    with RunLock(args.run_dir), SignalGuard(lambda name: f"interrupted by {name}; eval.json and the figures are "
                                                         "each either as before or complete"):
        trained, model_path = model_state(args.run_dir, config)
        splits = load_data(args, config)
        vae, epoch = load_model(args, config, model_path, trained)
        return evaluate_run(args, config, backend, splits, vae, epoch)


def model_state(run_dir, config):
    """(epochs in the run's checkpoint, path of model.keras): what --resume and this program make of the
    folder. A RunError, with the command that moves the run on, when there is no model."""
    from mnist_vae import checkpoints

    state = checkpoints.read_state(run_dir)
    trained, planned = (state["epoch"] if state else 0), config.get("epochs")
    model_path = os.path.join(run_dir, "model.keras")
    resume = messages.resume_command(run_dir)
    finished = trained and (not isinstance(planned, int) or trained >= planned)
    if os.path.isfile(model_path) and finished and read_json(run_dir, "metrics.json") is None:
        # Stopped during its final save: model.keras is written first, metrics.json last.
        raise RunError(f"{run_dir}: all {trained} epochs are trained but the final outputs were not all written; "
                       f"{resume} writes them")
    if os.path.isfile(model_path):
        return trained, model_path
    if trained == 0:
        raise RunError(f"{run_dir}: no epoch has completed yet, so there is no model.keras; {resume} trains it")
    if isinstance(planned, int) and trained < planned:
        raise RunError(f"{run_dir}: stopped after epoch {trained} of {planned}, before model.keras was written; "
                       f"{resume} trains the rest and writes it")
    raise RunError(f"{run_dir}: all {trained} epochs are trained but the final outputs were not written; "
                   f"{resume} writes them")


def load_data(args, config):
    """The run's held-out images, as its training saw them (from where --data says they are now)."""
    from mnist_vae import data

    config_path = os.path.join(args.run_dir, "config.json")
    data_settings = ("binarize", "seed", "dataset", "val_split", "limit", "validation")
    settings.check_saved(config, config_path, names=data_settings)
    saved = {name: config.get(name, settings.DEFAULTS[name]) for name in data_settings}
    try:
        splits = data.load_for_run(args.data or config.get("data"), saved["dataset"], saved["val_split"],
                                   saved["limit"], saved["binarize"], saved["seed"], saved["validation"])
    except data.DataError as e:
        raise data.DataError(f"{e}{'' if args.data else ' (moved? pass --data PATH)'}") from None
    except (TypeError, ValueError, KeyError) as e:
        raise RunError(f"{config_path}: a saved setting is not valid ({e.__class__.__name__}: {e})") from None
    if config.get("test_images") not in (None, len(splits.x_test)):
        raise data.DataError(f"{splits.source}: {len(splits.x_test)} test images, but the run was tested on "
                             f"{config['test_images']}")
    if config.get("conditional") and splits.y_test is None:
        raise data.DataError(f"{splits.source}: has no labels, which the run's conditional model needs")
    data.check_fingerprint(splits, config.get("data_sha256"), args.run_dir)
    return splits


def load_model(args, config, model_path, trained):
    """model.keras (in Keras' safe mode) and the epoch it was trained to; refuses one older than the
    checkpoint unless --older-model."""
    import keras

    import model  # noqa: F401  (registers the custom classes for loading)
    from mnist_vae import training

    try:
        vae = keras.saving.load_model(model_path, compile=False)  # safe mode; evaluating needs no optimizer
    except Exception as e:
        raise RunError(f"{model_path}: cannot load ({e.__class__.__name__}: {str(e).splitlines()[0][:200]})") from None
    training.check_model_matches(vae, config, model_path)
    epoch = model_epoch(vae, config)
    if epoch is not None and epoch < trained and not args.older_model:
        raise RunError(f"{model_path} is the model of epoch {epoch}, but the run's checkpoint has trained {trained} "
                       f"epochs (a --resume that did not finish): {messages.resume_command(args.run_dir)} "
                       f"finishes it; --older-model evaluates epoch {epoch}'s model")
    return vae, epoch


def evaluate_run(args, config, backend, splits, vae, epoch):
    """Evaluate, then write eval.json (eval-firstN.json for --max-images), the figures and report.html."""
    from mnist_vae import checkpoints, data, figures, report
    from mnist_vae.rundir import write_json

    x_test = data.as_float(splits.x_test[:args.max_images])
    partial = len(x_test) < len(splits.x_test)
    binarize = config.get("binarize", settings.DEFAULTS["binarize"])
    y_test = None if splits.y_test is None else splits.y_test[:args.max_images]
    results, posterior = evaluation.evaluate_model(vae, x_test, args.iw_samples, labels=y_test)
    results.update({"epoch": epoch, "binarize": binarize, "data": splits.source})
    name = f"eval-first{len(x_test)}.json" if partial else "eval.json"
    written = [write_json(os.path.join(args.run_dir, name), results)]
    print(evaluation.console_summary(results, binarize, config.get("preset"), settings.preset_overrides(config)))
    if not partial:  # the figures stay those of the whole held-out set
        state = checkpoints.read_state(args.run_dir)
        rows = state["history"] if state else []
        history = checkpoints.history_columns(rows) if state else None
        written += [p for p in figures.save_all(vae, x_test, splits.y_test, history, args.run_dir, posterior,
                                                seed=config.get("seed", 0)).values() if os.path.sep in p]
        # report.html with this evaluation's numbers (and metrics.json's, where the run wrote one)
        metrics = read_json(args.run_dir, "metrics.json") or {"epochs": results.get("epoch"), "partial": False}
        written.append(report.write(args.run_dir, config, metrics, results, rows))
    names = ", ".join(os.path.basename(p) for p in written)
    print(f"evaluated on {backend} ({messages.model_of_epoch(epoch)}); wrote {names}")
    return 0


def model_epoch(vae, config):
    """The epoch a saved model was trained to, from its count of training steps."""
    from keras import ops

    try:
        steps_per_epoch = math.ceil(config["train_images"] / config["batch_size"])
        return int(ops.convert_to_numpy(vae.steps_taken.value)) // steps_per_epoch
    except (KeyError, TypeError, ZeroDivisionError, AttributeError):
        return None


def main(argv=None):
    args = parse_args(argv)
    try:
        return cli.exit_on_user_error(run, args)
    except KeyboardInterrupt:  # before the run folder is touched
        print("\ninterrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
