"""The reference classifier that scores samples (sample_quality.py): a small LeNet-like CNN the project trains
itself, on a run's training images, deterministically from a fixed seed, on first use; cached outside the run
folders by the hash of its training images and of this code's version, so that every run on the same data waits
for it once and is scored by the same network. Nothing is downloaded; the test split is never trained on.
"""
import hashlib
import json
import os
import time

import numpy as np

from mnist_vae.rundir import atomic_write, write_json

VERSION = 1  # raise with any change to what build() or train() make: the cached classifiers are then retrained
EPOCHS = 6
BATCH_SIZE = 128
SEED = 1998  # LeCun et al.'s year: fixed, so that the classifier of the same images is the same network
FEATURES = "features"  # the penultimate layer's name: the Fréchet distance compares its activations


def cache_folder():
    """Where trained classifiers are kept: $MNIST_VAE_CACHE, else $XDG_CACHE_HOME/mnist-vae, else ~/.cache/mnist-vae."""
    if os.environ.get("MNIST_VAE_CACHE"):
        return os.environ["MNIST_VAE_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mnist-vae")


def key(images, labels, epochs=EPOCHS):
    """A short hash of the training images, their labels and this code's version: the cached file's name."""
    digest = hashlib.sha256(f"classifier v{VERSION} epochs {epochs} {images.shape}".encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()[:16]


def build(width=128):
    """28x28x1 grey pixels in [0, 1] -> 10 logits: two 3x3 convolutions (32, 64) with max pooling, then a dense
    layer of `width` units (the features) and dropout; every initializer and the dropout seeded."""
    import keras
    from keras import layers

    def seeded(i):  # float32 whatever the run's precision policy: every run is scored by the same network
        return {"kernel_initializer": keras.initializers.GlorotUniform(seed=SEED + i), "dtype": "float32"}

    images = keras.Input((28, 28, 1), name="images")
    x = layers.MaxPooling2D(dtype="float32")(layers.Conv2D(32, 3, activation="relu", **seeded(0))(images))
    x = layers.MaxPooling2D(dtype="float32")(layers.Conv2D(64, 3, activation="relu", **seeded(1))(x))
    features = layers.Dense(width, activation="relu", name=FEATURES, **seeded(2))(layers.Flatten(dtype="float32")(x))
    logits = layers.Dense(10, name="logits", **seeded(3))(layers.Dropout(0.3, seed=SEED, dtype="float32")(features))
    return keras.Model(images, logits, name="mnist_classifier", dtype="float32")


def train(images, labels, epochs=EPOCHS, width=128, progress=None):
    """A classifier trained on uint8 images (N, 28, 28, 1) and their digits: Adam, batch BATCH_SIZE, the order of
    each epoch drawn from SEED. progress(done, total): called after each step (total: epochs x steps)."""
    import keras

    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")  # a mixed-precision run's policy stays out of it
    try:
        model = build(width)
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    finally:
        keras.mixed_precision.set_global_policy(policy)
    x = images.astype(np.float32) / 255.0
    steps = -(-len(x) // BATCH_SIZE)
    order = np.random.default_rng(SEED)

    class Report(keras.callbacks.Callback):
        def __init__(self, epoch):
            super().__init__()
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if progress:
                progress(self.epoch * steps + batch + 1, epochs * steps)

    for epoch in range(epochs):  # our own shuffling: no global seed is touched
        shuffled = order.permutation(len(x))
        model.fit(x[shuffled], labels[shuffled].astype(np.int32), batch_size=BATCH_SIZE, epochs=1, shuffle=False,
                  verbose=0, callbacks=[Report(epoch)])
    return model


def outputs(model, images, batch_size=1000):
    """(penultimate features (N, width), class probabilities (N, 10)) of float32 images in [0, 1], as float64."""
    import keras

    from mnist_vae.batching import predict

    both = keras.Model(model.inputs[0], [model.get_layer(FEATURES).output, model.outputs[0]])  # one input, as called
    both.compile(jit_compile=keras.backend.backend() == "jax")
    features, logits = predict(lambda x: both.predict_on_batch(x),
                               [np.asarray(images, np.float32).reshape(-1, 28, 28, 1)], batch_size)
    logits = logits.astype(np.float64)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    return features.astype(np.float64), probabilities / probabilities.sum(axis=1, keepdims=True)


def accuracy(model, images, labels):
    """The share of uint8 images whose most probable class is their label."""
    return float(np.mean(outputs(model, images.astype(np.float32) / 255.0)[1].argmax(axis=1) == labels))


def cached(splits, say=print, epochs=EPOCHS, width=128, folder=None):
    """(classifier, its record) for these grey splits' training images: the cached one when there is one, else
    trained now (with progress) and cached, its test accuracy measured once and recorded beside it."""
    import keras

    from mnist_vae.progress import Progress

    folder = folder or cache_folder()
    name = key(splits.x_train, splits.y_train, epochs)
    path = os.path.join(folder, f"classifier-{name}.keras")
    record_path = os.path.join(folder, f"classifier-{name}.json")
    if os.path.isfile(path) and os.path.isfile(record_path) and not os.path.islink(path):
        try:
            with open(record_path) as f:
                record = json.load(f)
            return keras.saving.load_model(path, safe_mode=True, compile=False), record  # for inference only
        except (OSError, ValueError, KeyError) as e:  # damaged: train it anew
            say(f"note: the cached classifier {path} could not be read ({type(e).__name__}); training it anew")
    began = time.time()
    progress = Progress(f"training the reference classifier on {len(splits.x_train):,} images (once for this "
                        f"data; cached in {folder})", epochs * -(-len(splits.x_train) // BATCH_SIZE), "step")
    model = train(splits.x_train, splits.y_train, epochs, width, progress=lambda done, _: progress.update(done))
    record = {"key": name, "version": VERSION, "trained_on": int(len(splits.x_train)), "epochs": epochs,
              "test_images": int(len(splits.x_test)), "test_accuracy": accuracy(model, splits.x_test, splits.y_test),
              "seconds": round(time.time() - began, 1), "backend": keras.backend.backend(), "data": splits.source}
    os.makedirs(folder, exist_ok=True)
    atomic_write(path, model.save)
    write_json(record_path, record)
    say(f"reference classifier: trained on {record['trained_on']:,} images in {record['seconds']:.0f} s, test "
        f"accuracy {record['test_accuracy']:.2%}; cached as {path}")
    return model, record
