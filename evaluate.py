"""Evaluate a trained run on its held-out images: ELBO terms, the importance-weighted NLL, active units.

    python evaluate.py outputs/RUN                      # k as the run's own evaluation: it repeats its numbers
    python evaluate.py outputs/RUN --iw-samples 5000    # as in the papers
    python evaluate.py outputs/RUN --max-images 500     # a quick look

Reloads model.keras and the run's config (data source, binarization), writes eval.json and the
figures into the run folder, and prints a table. All values are nats per image.
"""
import argparse
import os
import sys

from mnist_vae import backends, cli, console, messages, settings
from mnist_vae.rundir import RunError
from mnist_vae.runfolder import RunFolder


def parse_args(argv=None):
    from mnist_vae.cli import number_in_range

    p = argparse.ArgumentParser(description="Evaluate a trained run on its held-out images.",
                                formatter_class=cli.HelpFormatter)
    p.add_argument("run_dir", type=cli.path_text, metavar="RUN_DIR", help="a run folder written by train.py")
    p.add_argument("--iw-samples", type=number_in_range(int, 1), default=None,
                   help="importance samples per image (papers: 5000); default: the run's own, train.py's "
                        f"--iw-samples ({settings.DEFAULTS['iw_samples']} unless set; 5000 in the papers' presets), "
                        "so that it repeats the run's numbers")
    p.add_argument("--max-images", type=number_in_range(int, 1), default=None,
                   help="evaluate only the first N held-out images (written to eval-firstN.json; the run's "
                        "eval.json and figures stay as they are)")
    p.add_argument("--data", type=cli.path_text, default=None, metavar="PATH",
                   help="where the run's data is now, if it has moved since training (default: the saved path)")
    p.add_argument("--no-sample-quality", action="store_true",
                   help="skip the samples' scores (Fréchet distance and digit coverage in a reference classifier's "
                        "features; its first use on new data trains the classifier, about a minute)")
    p.add_argument("--older-model", action="store_true",
                   help="evaluate model.keras even when the run's checkpoint has trained further")
    backends.add_backend_flag(p)
    return p.parse_args(argv)


def run(args):
    from mnist_vae import build
    from mnist_vae.rundir import RunLock
    from mnist_vae.stopping import SignalGuard

    backend = backends.select_backend(args.backend or backends.default_backend())
    folder = RunFolder(args.run_dir)
    folder.record  # an edited or foreign config.json is refused before Keras starts
    backends.start_keras()
    # Every file is written atomically: a signal leaves each one as it was or complete.
    with RunLock(args.run_dir), SignalGuard(lambda name: f"interrupted by {name}; eval.json and the figures are "
                                                         "each either as before or complete"):
        trained, model_path = folder.model_to_evaluate()
        splits = folder.splits(args.data)
        vae, epoch = build.saved_model(folder, model_path)
        chosen = folder.early_stopping  # --early-stopping's model.keras is the best epoch's, by design
        if epoch is not None and epoch < trained and not args.older_model and not (
                chosen and epoch == chosen["chosen_epoch"]):
            raise RunError(f"{model_path} is the model of epoch {epoch}, but the run's checkpoint has trained "
                           f"{trained} epochs (a --resume that did not finish): "
                           f"{messages.resume_command(args.run_dir)} finishes it; --older-model evaluates epoch "
                           f"{epoch}'s model")
        return evaluate_run(args, folder, backend, splits, vae, epoch)


def evaluate_run(args, folder, backend, splits, vae, epoch):
    """Evaluate, then write eval.json (eval-firstN.json for --max-images), the figures and report.html."""
    from mnist_vae import data
    from mnist_vae.outputs import write_evaluation, write_figures_and_report

    config = folder.record
    x_test = data.as_float(splits.x_test[:args.max_images])
    partial = len(x_test) < len(splits.x_test)
    binarize = folder.settings.binarize
    chosen = folder.early_stopping
    iw_samples = args.iw_samples or folder.settings.iw_samples
    results, posterior, path = write_evaluation(vae, args.run_dir, splits, iw_samples, epoch, binarize,
                                                args.max_images, sample_quality=not args.no_sample_quality,
                                                extra={"early_stopping": chosen} if chosen else None)
    written = [path]
    print(console.summary(results, binarize, config.get("preset"), settings.preset_overrides(config)))
    if not partial:  # the figures stay those of the whole held-out set
        state = folder.state
        rows = state["history"] if state else []
        # report.html with this evaluation's numbers (and metrics.json's, where the run wrote one)
        metrics = folder.metrics or {"epochs": results.get("epoch"), "partial": False}
        pages, _ = write_figures_and_report(vae, args.run_dir, x_test, splits.y_test, posterior, rows, config,
                                            metrics, results)
        written += list(pages.values())
    names = ", ".join(os.path.basename(p) for p in written)
    print(f"evaluated on {backend} ({messages.model_of_epoch(epoch)}); wrote {names}")
    if not partial:
        print(messages.open_line(args.run_dir))
    return 0


def main(argv=None):
    args = parse_args(argv)
    try:
        return cli.exit_on_user_error(run, args)
    except KeyboardInterrupt:  # before the run folder is touched
        print("\ninterrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
