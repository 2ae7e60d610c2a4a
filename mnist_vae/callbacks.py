"""The callbacks a run trains with besides Keras' own: the KL warm-up, the held-out loss per epoch and
progress.gif's frames (the checkpoint's is checkpoints.EpochCheckpoint, the signals' stopping.SignalGuard)."""
import keras
import numpy as np

from mnist_vae.figures import frame_labels, pixels_of
from model import LOSS_TERMS, one_hot


def kl_weight_at(epoch, beta, warmup_epochs):
    """KL weight for a 0-based epoch: beta * (epoch + 1) / warmup_epochs, rising linearly to beta at the last
    warm-up epoch (the VampPrior code's warm-up). Its first epoch is weighed too: at 0 the KL would leave the
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
