"""One reader of run folders: RunFolder(path) answers every question about a run that train.py wrote.

Its settings (config.json, checked as the flags check them), where training stands (the checkpoint's
state), its history, metrics and evaluation, whether it is complete or was stopped in its final save, which
model its numbers belong to, its data as training saw it, and its model. train.py --resume, evaluate.py,
compare.py, report.html and tools/make_docs.py all ask it. Reading only: rundir.py writes.
Pure Python at import; the model is loaded (through Keras) only when asked for.
"""
import datetime
import functools
import os

from mnist_vae import messages
from mnist_vae.rundir import FINAL_OUTPUTS, RunError, read_history, read_json, read_state


def is_early_stopping_choice(evaluation, metrics):
    """Whether eval.json evaluated the model that early stopping chose of the run metrics.json describes: its
    epoch is then the best one, not the last trained, and its numbers are the finished run's (metrics.json's)."""
    chosen = evaluation.get("early_stopping") or {}
    return (not metrics.get("partial") and chosen.get("trained_epochs") == metrics.get("epochs")
            and chosen.get("chosen_epoch") == evaluation.get("epoch"))


class RunFolder:
    def __init__(self, path):
        self.path = str(path)
        self.name = os.path.basename(os.path.normpath(self.path))

    def file(self, name):
        return os.path.join(self.path, name)

    @functools.cached_property
    def record(self):
        """The run record, config.json, as a dict, every setting checked (an edited or foreign one is a RunError)."""
        from mnist_vae.settings import saved_config

        return saved_config(self.path)

    @property
    def settings(self):
        """The run's settings as a config.Config."""
        from mnist_vae.config import from_saved

        return from_saved(self.record, self.file("config.json"))

    @property
    def state(self):
        """The last committed checkpoint's state ({"epoch", "weights", "history"}), or None."""
        return read_state(self.path)

    @property
    def early_stopping(self):
        """What --early-stopping chose, from the checkpoint's history (early_stopping.summary), or None."""
        from mnist_vae import early_stopping

        patience, state = self.record.get("early_stopping") or 0, self.state
        if not patience or not state:
            return None
        return early_stopping.summary(state["history"], patience, self.record.get("kl_warmup") or 0)

    @property
    def epochs_trained(self):
        state = self.state
        return state["epoch"] if state else 0

    @property
    def metrics(self):
        return read_json(self.path, "metrics.json")

    @property
    def evaluation(self):
        return read_json(self.path, "eval.json")

    def history(self, epochs=None):
        """history.csv as {column: [values]}, up to `epochs` epochs."""
        return {column: values[:epochs] for column, values in read_history(self.path).items()}

    def is_complete(self, epochs=None):
        """Whether the final outputs for `epochs` epochs (default: those trained) are all written (metrics.json
        goes last, with "partial": false)."""
        epochs = self.epochs_trained if epochs is None else epochs
        metrics = self.metrics
        return (metrics is not None and metrics.get("partial") is False and metrics.get("epochs") == epochs
                and all(os.path.isfile(self.file(name)) for name in FINAL_OUTPUTS))

    def model_to_evaluate(self):
        """(epochs in the checkpoint, path of model.keras): what --resume and evaluate.py make of the folder. A
        RunError with the command that moves the run on when there is no finished model."""
        trained, planned = self.epochs_trained, self.record.get("epochs")
        model_path, resume = self.file("model.keras"), messages.resume_command(self.path)
        stopped_early = bool((self.early_stopping or {}).get("stopped_early"))  # no epoch left to train either
        finished = trained and (not isinstance(planned, int) or trained >= planned or stopped_early)
        if os.path.isfile(model_path) and finished and self.metrics is None:
            # Stopped during its final save: model.keras is written first, metrics.json last.
            raise RunError(f"{self.path}: {messages.all_epochs(trained)} but the final outputs were not all "
                           f"written; {resume} writes them")
        if os.path.isfile(model_path):
            return trained, model_path
        if trained == 0:
            raise RunError(f"{self.path}: no epoch has completed yet, so there is no model.keras; {resume} trains it")
        if isinstance(planned, int) and trained < planned and not stopped_early:
            raise RunError(f"{self.path}: stopped after epoch {trained} of {planned}, before model.keras was "
                           f"written; {resume} trains the rest and writes it")
        raise RunError(f"{self.path}: {messages.all_epochs(trained)} but the final outputs were not written; "
                       f"{resume} writes them")

    def numbers(self):
        """(metrics.json, eval.json or None): the numbers of one model, the last completed epoch's (or the
        finished run's); eval.json only when it evaluated that same model. RunError without a completed epoch."""
        metrics = self.metrics
        if metrics is None:
            raise RunError(f"{self.path}: no metrics.json yet (no epoch completed, or the run is still training)")
        if not metrics.get("epochs"):
            raise RunError(f"{self.path}: no epoch has completed, so there is nothing to compare; "
                           f"{messages.resume_command(self.path)} trains it")
        evaluation = self.evaluation
        if evaluation and evaluation.get("epoch", metrics["epochs"]) != metrics["epochs"] and not (
                is_early_stopping_choice(evaluation, metrics)):
            evaluation = None  # the evaluation of another model (an --older-model one): never beside these numbers
        return metrics, evaluation

    def status(self, metrics, evaluation=None, planned=None):
        """The run's state in one line, for its report: complete or stopped, and whose numbers are shown.
        metrics, evaluation: the numbers the report shows; planned: the epochs planned (default: config.json's)."""
        epochs, planned = metrics.get("epochs"), planned or self.record.get("epochs")
        status = (f"complete: {messages.count(epochs or 0, 'epoch')}" if not metrics.get("partial")
                  else f"stopped after {epochs} of {planned} epochs; python train.py --resume continues it")
        model_epoch = (evaluation or {}).get("epoch", epochs)
        chosen = (evaluation or {}).get("early_stopping")
        if chosen and model_epoch == chosen["chosen_epoch"]:
            status += (f"{'; stopped early' if chosen['stopped_early'] else ''}: the numbers and figures below are of "
                       f"epoch {model_epoch}, the best on the validation slice (--early-stopping "
                       f"{chosen['patience']})")
        elif evaluation and model_epoch != epochs:  # evaluate.py --older-model: one page, but say whose numbers
            status += (f". The numbers and figures below are of {messages.model_of_epoch(model_epoch)} "
                       f"(evaluate.py --older-model), not of epoch {epochs}")
        return status

    def wall_time(self):
        """(minutes the run took, the day eval.json was written, UTC). The minutes: its training's wall time over
        all its sessions (the checkpoint's training_seconds) plus its evaluation's; a run folder written before
        the checkpoint kept that, config.json's time to eval.json's, which restarts at a --resume."""
        began, ended = (os.path.getmtime(self.file(name)) for name in ("config.json", "eval.json"))
        training = (self.state or {}).get("training_seconds")
        seconds = ended - began if training is None else float(training) + float(self.evaluation.get("seconds", 0))
        return seconds / 60, datetime.datetime.fromtimestamp(ended, datetime.timezone.utc).strftime("%Y-%m-%d")

    def splits(self, data_path=None):
        """The run's images as its training saw them (from data_path where the data has moved since)."""
        from mnist_vae import data

        config, settings = self.record, self.settings
        try:
            splits = data.load_for_run(data_path or settings.data, settings.dataset, settings.val_split,
                                       settings.limit, settings.binarize, settings.seed, settings.validation)
        except data.DataError as e:
            raise data.DataError(f"{e}{'' if data_path else ' (moved? pass --data PATH)'}") from None
        if config.get("test_images") not in (None, len(splits.x_test)):
            raise data.DataError(f"{splits.source}: {len(splits.x_test)} test images, but the run was tested on "
                                 f"{config['test_images']}")
        if settings.conditional and splits.y_test is None:
            raise data.DataError(f"{splits.source}: has no labels, which the run's conditional model needs")
        data.check_fingerprint(splits, config.get("data_sha256"), self.path)
        return splits

    def model_epoch(self, vae):
        """The epoch a model of this run was trained to, from its count of training steps."""
        from keras import ops

        try:
            steps_per_epoch = -(-self.record["train_images"] // self.record["batch_size"])
            return int(ops.convert_to_numpy(vae.steps_taken.value)) // steps_per_epoch
        except (KeyError, TypeError, ZeroDivisionError, AttributeError):
            return None
