"""--tensorboard: TensorBoard's logs of a run, on any backend (they are written through tf.summary, so
TensorFlow must be installed).

The logs are written from what the checkpoint has committed, never from an epoch in progress: when
training starts, <run>/tensorboard/ is written anew from history.csv's rows and progress.gif's frames, and
each epoch is appended once its checkpoint is committed (train/ and validation/ hold epoch_loss,
epoch_reconstruction_loss and epoch_kl_loss, as Keras' own TensorBoard callback names them; samples/ the
decoded fixed draws). So they hold exactly the epochs of history.csv, once each, however often the run is
stopped, killed and resumed.
"""
import os
import shutil

import keras

from model import LOSS_TERMS


def _log(writers, rows, frames, first=0):
    """Log rows[first:] (and their frames) through the three writers (train, validation, samples)."""
    import numpy as np
    import tensorflow as tf

    from mnist_vae.plots import tile

    for (split, prefix), writer in zip((("train", ""), ("validation", "val_")), writers[:2]):
        with writer.as_default():
            for row in rows[first:]:
                for term in LOSS_TERMS:
                    if prefix + term in row:
                        tf.summary.scalar("epoch_" + term, row[prefix + term], step=row["epoch"] - 1)
    with writers[2].as_default():
        for epoch in range(first, min(len(rows), len(frames or []))):
            if frames[epoch] is not None:
                side = int(np.sqrt(len(frames[epoch])))
                grid = tile(np.asarray(frames[epoch][:side * side], np.float32), side, side)
                tf.summary.image("samples from the same z every epoch", 1 - grid.reshape(1, *grid.shape, 1),
                                 step=epoch)
    for writer in writers:
        writer.flush()


def _writers(log_dir):
    import tensorflow as tf

    return [tf.summary.create_file_writer(os.path.join(log_dir, name)) for name in ("train", "validation", "samples")]


def write_logs(log_dir, rows, frames):
    """Write the logs of these committed epochs (rows: history.csv's, frames: one per epoch) into log_dir,
    replacing what was there (through a sibling folder, so a reader never sees half of them)."""
    from mnist_vae.rundir import new_folder_mode

    fresh = log_dir + ".new"
    shutil.rmtree(fresh, ignore_errors=True)
    writers = _writers(fresh)
    _log(writers, rows, frames)
    for writer in writers:
        writer.close()
    for folder, _, _ in os.walk(fresh):
        os.chmod(folder, new_folder_mode())  # tf.summary makes its folders 0755 whatever the umask
    old = log_dir + ".old"
    if os.path.isdir(log_dir):
        os.replace(log_dir, old)
    os.replace(fresh, log_dir)
    shutil.rmtree(old, ignore_errors=True)


class CommittedEpochLogs(keras.callbacks.Callback):
    """The logs of a run: written anew from the committed epochs when training starts (so that nothing a
    stopped or killed session logged survives), then each newly committed epoch appended. It comes after the
    checkpoint (saver) among fit's callbacks and waits for its write."""

    def __init__(self, log_dir, saver, frames):
        super().__init__()
        self.log_dir, self.saver, self.frames = log_dir, saver, frames
        self.writers, self.logged = None, 0

    def on_train_begin(self, logs=None):
        write_logs(self.log_dir, self.saver.rows, self.frames)
        self.writers, self.logged = _writers(self.log_dir), len(self.saver.rows)

    def on_epoch_end(self, epoch, logs=None):
        self.saver.wait()  # the epoch's commit, or none (a stopped or diverged epoch is never committed)
        _log(self.writers, self.saver.rows, self.frames, first=self.logged)
        self.logged = len(self.saver.rows)

    def on_train_end(self, logs=None):
        for writer in self.writers or []:
            writer.close()
