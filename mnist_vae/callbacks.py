"""The callbacks a run trains with besides Keras' own: the KL warm-up, the held-out loss per epoch, a stage's
NLL and progress.gif's frames (the checkpoint's is checkpoints.EpochCheckpoint, the signals'
stopping.SignalGuard), and the list fit runs, in the order each epoch's end needs them (for_fit)."""
import os

import keras
import numpy as np

from mnist_vae.figures import frame_labels, pixels_of
from model import LOSS_TERMS, one_hot


def kl_weight_at(epoch, beta, warmup_epochs):
    """KL weight for a 0-based epoch: beta * (epoch + 1) / warmup_epochs, rising linearly to beta at the last
    warm-up epoch (Tomczak & Welling's code's warm-up). Its first epoch is weighed too: at 0 the KL would leave the
    posterior variances (and a learned prior's) free to collapse, which the next epoch's KL then punishes hugely."""
    return beta if warmup_epochs <= 0 else beta * min(1.0, (epoch + 1) / warmup_epochs)


class KLWarmup(keras.callbacks.Callback):
    """Sets vae.kl_weight at the start of every epoch from the schedule (a function of the epoch only,
    so resumed runs follow it exactly)."""

    def __init__(self, beta, warmup_epochs):
        super().__init__()
        self.beta, self.warmup_epochs = beta, warmup_epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.model.kl_weight.assign(kl_weight_at(epoch, self.beta, self.warmup_epochs))


class HeldOutLoss(keras.callbacks.Callback):
    """Adds the held-out loss terms (val_loss, val_reconstruction_loss, val_kl_loss) to every epoch's logs, as
    fit's validation_data would, for the callbacks after it and the history.

    Each batch (pipeline.held_out_batches: a few large ones, made once) is one compiled test step: Keras'
    own validation pass sets up its input pipeline again every epoch, which cost more than the pass itself
    (docs/performance.md).
    """

    def __init__(self, batches, prefix="val_"):
        super().__init__()
        self.batches, self.prefix = batches, prefix  # val_: the test set (Keras' name); validation_: the slice
        self.images = [int(np.count_nonzero(batch["weight"])) for batch in batches]  # padding rows weigh 0

    def on_epoch_end(self, epoch, logs=None):
        totals = dict.fromkeys(LOSS_TERMS, 0.0)
        for batch, images in zip(self.batches, self.images):
            result = self.model.test_on_batch(batch, return_dict=True)  # per-image means of this batch
            for name in LOSS_TERMS:
                totals[name] += float(result[name]) * images
        logs.update({self.prefix + name: total / sum(self.images) for name, total in totals.items()})


class StageNLL(keras.callbacks.Callback):
    """At the end of each stage of the staged schedule, the importance-weighted NLL of the held-out images (k
    samples each) into the epoch's logs, as test_nll_iw and test_nll_iw_stderr: history.csv then holds the
    NLL against passes, committed with the epoch's checkpoint (so a resumed run keeps it exactly)."""

    def __init__(self, images, labels, k, stage_ends):
        super().__init__()
        self.images, self.labels, self.k, self.stage_ends = images, labels, k, set(stage_ends)

    def on_epoch_end(self, epoch, logs=None):
        from mnist_vae.evaluation import nll_estimate

        # Not for an epoch a signal cut short: it is not checkpointed, and the bound takes a while.
        if epoch + 1 in self.stage_ends and logs is not None and not self.model.stop_training:
            logs["test_nll_iw"], logs["test_nll_iw_stderr"] = nll_estimate(self.model, self.images, self.k,
                                                                           self.labels)


class SampleFrames(keras.callbacks.Callback):
    """Decodes n draws from the model's prior, the same every epoch for a seed (made again from a prior that
    learns), after every epoch, keeping the frames in memory for progress.gif; a conditional model draws the
    digits 0-9 in turn."""

    def __init__(self, seed, n=36, frames=()):
        super().__init__()
        self.seed, self.n = seed, n
        self.frames = list(frames)  # one per epoch from epoch 1 (earlier sessions' from the checkpoint)

    def on_epoch_end(self, epoch, logs=None):
        z = self.model.prior.draw(self.n, self.seed)
        inputs = [z, one_hot(frame_labels(self.n))] if self.model.conditional else z
        # A compiled call: a fraction of an eager one's cost (docs/performance.md).
        logits = np.asarray(self.model.decoder.predict_on_batch(inputs), np.float32)
        self.frames.append(pixels_of(logits, self.model.likelihood))


# The callbacks of a run, assembled (train.py and tools/bench.py fit with them).
STAGE_NLL_IMAGES = 2000  # held-out images whose NLL a staged run records at the end of each stage


def stage_nll(config, x_test, y_test):
    """For a staged run, the callback that records the test NLL at the end of each stage (callbacks.StageNLL):
    k = 1000 on the first STAGE_NLL_IMAGES test images, a few percent of the run's time. None otherwise."""
    from mnist_vae import data
    from mnist_vae.presets import IW_SAMPLES, staged_passes

    if config.lr_schedule != "staged":
        return None
    labels = y_test[:STAGE_NLL_IMAGES] if config.conditional else None
    return StageNLL(data.as_float(x_test[:STAGE_NLL_IMAGES]), labels, IW_SAMPLES,
                    [staged_passes(stage) for stage in range(1, config.stages + 1)])


def checkpoint_saver(config, run_dir, state, frames):
    """The epoch checkpoint (checkpoints.EpochCheckpoint), continuing a resumed run's history; with
    --early-stopping it also keeps the best epoch's weights."""
    from mnist_vae import checkpoints, early_stopping

    best_epoch_of = None
    if config.early_stopping:
        def best_epoch_of(rows):
            return early_stopping.progress(rows, config.early_stopping, config.kl_warmup)[1]
    return checkpoints.EpochCheckpoint(run_dir, state["history"] if state else [], frames=frames,
                                       best_epoch_of=best_epoch_of, best=(state or {}).get("best_weights"),
                                       training_seconds=state.get("training_seconds") if state else 0.0)


def for_fit(config, run_dir, guard, held_out, frames, saver, validation=None, stage_end=None):
    """fit's callbacks, in the order they must see each epoch's end: the signal check, the KL weight and
    learning rate, the held-out (and validation) loss and a stage's NLL (into the logs), the epoch's frame, the
    NaN stop, the checkpoint (it commits what the others added), TensorBoard's logs of what it committed, and early
    stopping's judgement."""
    from mnist_vae import early_stopping
    from mnist_vae.presets import learning_rate_at

    tensorboard = []
    if config.tensorboard:  # after the checkpoint: it logs what the checkpoint committed
        from mnist_vae.tensorboard import CommittedEpochLogs

        tensorboard = [CommittedEpochLogs(os.path.join(run_dir, "tensorboard"), saver, frames.frames)]
    # Keras' own scheduler sets a staged rate at each epoch's start: a function of the epoch, so resuming
    # mid-stage continues the schedule exactly. A constant rate is the optimizer's own, restored with it.
    schedule = [] if config.lr_schedule == "constant" else [keras.callbacks.LearningRateScheduler(
        lambda epoch, _: learning_rate_at(epoch, config.lr, config.lr_schedule))]
    validating = [HeldOutLoss(validation, prefix="validation_")] if validation else []
    early = [early_stopping.callback(config.early_stopping, saver.rows, config.kl_warmup)] if (
        config.early_stopping) else []  # last: it judges an epoch the others have finished
    return [guard.callback(), KLWarmup(config.beta, config.kl_warmup), *schedule, HeldOutLoss(held_out), *validating,
            *([stage_end] if stage_end else []), frames, keras.callbacks.TerminateOnNaN(), saver, *tensorboard,
            *early]
