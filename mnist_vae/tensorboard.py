"""--tensorboard: TensorBoard's logs of a run, on any backend (they are written through tf.summary, so
TensorFlow must be installed).

The logs are written from what the checkpoint has committed, never from an epoch in progress: after every
committed epoch, <run>/tensorboard/ is written anew from history.csv's rows and progress.gif's frames
(train/ and validation/ hold epoch_loss, epoch_reconstruction_loss and epoch_kl_loss, as Keras' own
TensorBoard callback names them; samples/ the decoded fixed draws). So they hold exactly the epochs of
history.csv, once each, however often the run is stopped and resumed.
"""
import os
import shutil

import keras

from model import LOSS_TERMS


def write_logs(log_dir, rows, frames):
    """Write the logs of these committed epochs (rows: history.csv's, frames: one per epoch) into log_dir,
    replacing what was there (through a sibling folder, so a reader never sees half of them)."""
    import numpy as np
    import tensorflow as tf

    from mnist_vae.plots import tile
    from mnist_vae.rundir import new_folder_mode

    fresh = log_dir + ".new"
    shutil.rmtree(fresh, ignore_errors=True)
    for split, prefix in (("train", ""), ("validation", "val_")):
        with tf.summary.create_file_writer(os.path.join(fresh, split)).as_default():
            for row in rows:
                for term in LOSS_TERMS:
                    if prefix + term in row:
                        tf.summary.scalar("epoch_" + term, row[prefix + term], step=row["epoch"] - 1)
    with tf.summary.create_file_writer(os.path.join(fresh, "samples")).as_default():
        for epoch, frame in enumerate((frames or [])[:len(rows)]):
            if frame is not None:
                side = int(np.sqrt(len(frame)))
                grid = tile(np.asarray(frame[:side * side], np.float32), side, side)
                tf.summary.image("samples from the same z every epoch", 1 - grid.reshape(1, *grid.shape, 1),
                                 step=epoch)
    for folder, _, _ in os.walk(fresh):
        os.chmod(folder, new_folder_mode())  # tf.summary makes its folders 0755 whatever the umask
    old = log_dir + ".old"
    if os.path.isdir(log_dir):
        os.replace(log_dir, old)
    os.replace(fresh, log_dir)
    shutil.rmtree(old, ignore_errors=True)


class CommittedEpochLogs(keras.callbacks.Callback):
    """Rewrites the logs after each committed epoch; it comes after the checkpoint (saver) among fit's
    callbacks, and waits for its write."""

    def __init__(self, log_dir, saver, frames):
        super().__init__()
        self.log_dir, self.saver, self.frames = log_dir, saver, frames

    def on_train_begin(self, logs=None):
        write_logs(self.log_dir, self.saver.rows, self.frames)  # a resumed run: the epochs it has so far

    def on_epoch_end(self, epoch, logs=None):
        self.saver.wait()  # the epoch's commit, or none (a stopped or diverged epoch is never committed)
        write_logs(self.log_dir, self.saver.rows, self.frames)
