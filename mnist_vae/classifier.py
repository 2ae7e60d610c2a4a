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


class CacheError(Exception):
    """Why a cached classifier is not used (one line)."""


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_record(record, name):
    """The record if it is one cached() wrote for these images, else CacheError."""
    if not isinstance(record, dict):
        raise CacheError("its record is not an object")
    expected = {"key": str, "version": int, "trained_on": int, "test_images": int, "test_accuracy": float,
                "sha256": str}
    for field, kind in expected.items():
        value = record.get(field)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CacheError(f"its record's {field} is {json.dumps(value)[:40]}")
    if record["key"] != name or record["version"] != VERSION:
        raise CacheError("its record is of other images or another version")
    if not 0.0 <= record["test_accuracy"] <= 1.0 or record["trained_on"] < 1 or record["test_images"] < 0:
        raise CacheError("its record's numbers are out of range")
    return record


def _check_model(model):
    """The model if it is a classifier that build() makes (one 28x28x1 input, 10 logits, the features layer)."""
    import keras

    try:
        fits = (isinstance(model, keras.Model) and model.name == "mnist_classifier" and len(model.inputs) == 1
                and tuple(model.inputs[0].shape[1:]) == (28, 28, 1) and len(model.outputs) == 1
                and tuple(model.outputs[0].shape[1:]) == (10,) and model.get_layer(FEATURES) is not None)
    except (AttributeError, ValueError, TypeError):
        fits = False
    if not fits:
        raise CacheError(f"it is a {type(model).__name__}, not the reference classifier")
    return model


def _load(path, record_path, name):
    """(model, record) from the cache, or CacheError naming what is wrong with it."""
    import keras

    if os.path.islink(path) or os.path.islink(record_path):
        raise CacheError("it is a symbolic link")
    try:
        with open(record_path, encoding="utf-8") as f:
            record = _check_record(json.load(f), name)
        if _sha256(path) != record["sha256"]:
            raise CacheError("the model file is not the one its record describes")
        model = keras.saving.load_model(path, safe_mode=True, compile=False)  # for inference only
    except CacheError:
        raise
    except Exception as e:  # damaged, foreign or unreadable: whatever Keras or the file system raised
        raise CacheError(f"{type(e).__name__}") from None
    return _check_model(model), record


def _unusable(folder):
    """Why folder cannot hold the cache (one phrase), or None when it can."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        return e.strerror or type(e).__name__
    if not os.access(folder, os.W_OK | os.X_OK):
        return "not writable"
    return None


def cached(splits, say=print, epochs=EPOCHS, width=128, folder=None):
    """(classifier, its record) for these grey splits' training images: the cached one when there is one, else
    trained now (with progress) and cached, its test accuracy measured once and recorded beside it. The cache
    is only a cache: a foreign, edited or damaged file is trained anew, and an unusable folder means a
    classifier for this run alone, each said in one line that names the cache and --no-sample-quality."""
    import keras

    from mnist_vae.progress import Progress

    folder = folder or cache_folder()
    name = key(splits.x_train, splits.y_train, epochs)
    path = os.path.join(folder, f"classifier-{name}.keras")
    record_path = os.path.join(folder, f"classifier-{name}.json")
    skip = "--no-sample-quality skips the samples' scores"
    if os.path.lexists(path) or os.path.lexists(record_path):
        try:
            return _load(path, record_path, name)
        except CacheError as e:
            say(f"note: the cached classifier {path} is not usable ({e}); training it anew ({skip})")
    unusable = _unusable(folder)
    if unusable:
        say(f"note: the classifier cache {folder} cannot be used ({unusable}; set MNIST_VAE_CACHE to a writable "
            f"folder): the classifier is trained for this evaluation only ({skip})")
    began = time.time()
    where = "not cached" if unusable else f"once for this data; cached in {folder}"
    progress = Progress(f"training the reference classifier on {len(splits.x_train):,} images ({where})",
                        epochs * -(-len(splits.x_train) // BATCH_SIZE), "step")
    model = train(splits.x_train, splits.y_train, epochs, width, progress=lambda done, _: progress.update(done))
    record = {"key": name, "version": VERSION, "trained_on": int(len(splits.x_train)), "epochs": epochs,
              "test_images": int(len(splits.x_test)), "test_accuracy": accuracy(model, splits.x_test, splits.y_test),
              "seconds": round(time.time() - began, 1), "backend": keras.backend.backend(), "data": splits.source}
    where = ""
    if not unusable:
        try:
            atomic_write(path, model.save)
            record["sha256"] = _sha256(path)  # what a later run checks the file against
            write_json(record_path, record)
            where = f"; cached as {path}"
        except OSError as e:
            say(f"note: the classifier cache {folder} cannot be written ({e.strerror or e}): the classifier is used "
                f"for this evaluation only ({skip})")
    say(f"reference classifier: trained on {record['trained_on']:,} images in {record['seconds']:.0f} s, test "
        f"accuracy {record['test_accuracy']:.2%}{where}")
    return model, record
