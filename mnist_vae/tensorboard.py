"""--tensorboard: TensorBoard's logs of a run, on any backend (they are written through tf.summary, so
TensorFlow must be installed)."""
import os


def tensorboard_callbacks(log_dir, frames):
    """Keras' TensorBoard callback (the loss terms for train and test per epoch) and a callback that adds
    the epoch's samples from the fixed latent draws (frames: callbacks.SampleFrames.frames) as an image."""
    import keras
    import numpy as np
    import tensorflow as tf

    from mnist_vae.plots import tile

    class SampleImages(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "samples"))

        def on_epoch_end(self, epoch, logs=None):
            side = int(np.sqrt(len(frames[-1])))
            tiles = np.asarray(frames[-1][:side * side], np.float32).reshape(side, side, 28, 28)
            grid = tile(tiles, side, side).reshape(1, side * 28, side * 28, 1)
            with self.writer.as_default():
                tf.summary.image("samples from the same z every epoch", 1 - grid, step=epoch)
            self.writer.flush()

        def on_train_end(self, logs=None):
            self.writer.close()

    return [keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False), SampleImages()]
