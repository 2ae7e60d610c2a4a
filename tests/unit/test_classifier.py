"""mnist_vae/classifier.py: the reference classifier learns the digits, is cached by its training images' hash
(reused, rebuilt when they change or the file is damaged) and its features feed the Fréchet distance."""
import json
import os

import numpy as np
import pytest

from mnist_vae import classifier, data, sample_quality

pytestmark = pytest.mark.slow  # each test trains a network (seconds)


@pytest.fixture(scope="module")
def small_splits(digits):
    images, labels = digits
    return data.Splits(images[:3000], labels[:3000], images[-300:], labels[-300:], "digits")


def test_it_learns_the_digits_and_is_reused_from_its_cache(tmp_path, small_splits):
    said = []
    model, record = classifier.cached(small_splits, said.append, epochs=3, folder=str(tmp_path))
    assert len(said) == 1 and "trained on 3,000 images" in said[0]
    assert record["test_accuracy"] > 0.8  # 3,000 digits, three epochs: far above chance (0.1)
    assert record["test_accuracy"] == classifier.accuracy(model, small_splits.x_test, small_splits.y_test)
    files = sorted(os.listdir(tmp_path))
    assert files == [f"classifier-{record['key']}.json", f"classifier-{record['key']}.keras"]
    assert json.load(open(tmp_path / files[0])) == record
    again, record_again = classifier.cached(small_splits, said.append, epochs=3, folder=str(tmp_path))
    assert len(said) == 1 and record_again == record  # nothing trained: the cached network
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = data.as_float(small_splits.x_test[:50])
    features, probabilities = classifier.outputs(again, x)
    assert features.shape == (50, 128) and probabilities.shape == (50, 10) and features.dtype == np.float64
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(classifier.outputs(model, x)[0], features, rtol=1e-5, atol=1e-6)


def test_other_training_images_or_a_damaged_file_train_it_anew(tmp_path, small_splits):
    _, record = classifier.cached(small_splits, lambda line: None, epochs=1, folder=str(tmp_path))
    changed = data.Splits(small_splits.x_train.copy(), small_splits.y_train, small_splits.x_test,
                          small_splits.y_test, "digits")
    changed.x_train[0, 14, 14, 0] ^= 1  # one pixel
    said = []
    _, other = classifier.cached(changed, said.append, epochs=1, folder=str(tmp_path))
    assert other["key"] != record["key"] and len(said) == 1 and "trained on" in said[0]
    with open(tmp_path / f"classifier-{record['key']}.keras", "wb") as f:
        f.write(b"not a zip file")
    said = []
    model, again = classifier.cached(small_splits, said.append, epochs=1, folder=str(tmp_path))
    assert said[0].startswith("note: the cached classifier") and "trained on" in said[1]
    assert again["key"] == record["key"] and model.count_params() > 0


def test_its_features_tell_digits_from_noise(tmp_path, small_splits):
    """The distance means something: real digits sit several times closer to the test images than noise or
    one digit repeated, in the classifier's features."""
    model, _ = classifier.cached(small_splits, lambda line: None, epochs=3, folder=str(tmp_path))
    test_features, _ = classifier.outputs(model, data.as_float(small_splits.x_test))
    train_features, _ = classifier.outputs(model, data.as_float(small_splits.x_train[:300]))
    noise = np.random.default_rng(0).random((300, 28, 28, 1)).astype(np.float32)
    noise_features, _ = classifier.outputs(model, noise)
    ones = data.as_float(small_splits.x_train[small_splits.y_train == 1][:1].repeat(300, axis=0))
    ones_features, ones_probabilities = classifier.outputs(model, ones)
    real = sample_quality.features_distance(train_features, test_features)
    assert real < sample_quality.features_distance(noise_features, test_features) / 4
    assert real < sample_quality.features_distance(ones_features, test_features) / 4
    assert sample_quality.coverage(ones_probabilities)["digits_drawn"] == 1


def test_the_same_images_train_the_same_network(small_splits):
    """Its seed fixes the weights, the dropout and each epoch's order: trained twice, it is the same network."""
    images, labels = small_splits.x_train[:500], small_splits.y_train[:500]
    first, second = (classifier.train(images, labels, epochs=1, width=16) for _ in range(2))
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_it_computes_in_float32_under_a_mixed_precision_run():
    """The same reference for every run: a mixed-precision run's policy does not reach it."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = classifier.train(np.zeros((8, 28, 28, 1), np.uint8), np.arange(8) % 10, epochs=1, width=8)
        assert keras.mixed_precision.global_policy().name == "mixed_float16"  # the run's own, given back
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert {layer.compute_dtype for layer in model.layers if layer.__class__.__name__ != "InputLayer"} == {"float32"}
    assert model.dtype_policy.name == "float32" and model.inputs[0].dtype == "float32"


def test_a_foreign_or_edited_cache_is_trained_anew_in_one_line(tmp_path, small_splits):
    """The cache is only a cache: another Keras model under its name, a record edited (a string where a number
    was, a value for a page to show) or a model file not the one its record describes is trained anew."""
    import keras

    _, record = classifier.cached(small_splits, lambda line: None, epochs=1, folder=str(tmp_path))
    model_path = tmp_path / f"classifier-{record['key']}.keras"
    record_path = tmp_path / f"classifier-{record['key']}.json"
    foreign = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    foreign.save(tmp_path / "foreign.keras")
    tampering = {
        "another model": lambda: (foreign.save(model_path), record_path.write_text(
            json.dumps({**record, "sha256": classifier._sha256(model_path)}))),
        "an edited record": lambda: record_path.write_text(json.dumps({**record, "test_accuracy": "<script>"})),
        "another file": lambda: foreign.save(model_path),
    }
    for how, tamper in tampering.items():
        tamper()
        said = []
        model, again = classifier.cached(small_splits, said.append, epochs=1, folder=str(tmp_path))
        assert said[0].startswith(f"note: the cached classifier {model_path} is not usable (") and \
            said[0].endswith("training it anew (--no-sample-quality skips the samples' scores)"), (how, said)
        assert "trained on" in said[1] and model.name == "mnist_classifier", how
        same = ("key", "trained_on", "test_images", "test_accuracy")  # the same network again (seeded)
        assert {k: again[k] for k in same} == {k: record[k] for k in same}, how
        assert again["sha256"] == classifier._sha256(model_path) != classifier._sha256(tmp_path / "foreign.keras")


def test_an_unusable_cache_folder_trains_for_this_evaluation_alone(tmp_path, small_splits, monkeypatch):
    """A cache folder that cannot be made (a file in its way) or written (here: a write that fails) costs the
    caching only, said in one line naming the cache and --no-sample-quality, never the scores or the run."""
    in_the_way = tmp_path / "a file"
    in_the_way.write_text("")
    said = []
    model, record = classifier.cached(small_splits, said.append, epochs=1, folder=str(in_the_way / "cache"))
    assert said[0].startswith(f"note: the classifier cache {in_the_way / 'cache'} cannot be used (")
    assert "MNIST_VAE_CACHE" in said[0] and "--no-sample-quality" in said[0] and "trained on" in said[1]
    assert record["test_accuracy"] > 0.1 and in_the_way.read_text() == ""

    def failing_write(path, write):
        raise OSError(30, "Read-only file system", path)

    monkeypatch.setattr(classifier, "atomic_write", failing_write)  # the folder is fine, its writes fail
    said = []
    model, again = classifier.cached(small_splits, said.append, epochs=1, folder=str(tmp_path / "ro"))
    assert said[0].startswith(f"note: the classifier cache {tmp_path / 'ro'} cannot be written (Read-only file "
                              "system)") and "--no-sample-quality" in said[0]
    assert again["test_accuracy"] == record["test_accuracy"] and os.listdir(tmp_path / "ro") == []


def test_evaluate_with_a_cache_path_that_is_a_file_still_scores_the_samples(tmp_path, finished_run, monkeypatch):
    import shutil

    from conftest import run_main

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (tmp_path / "cache-file").write_text("")
    monkeypatch.setenv("MNIST_VAE_CACHE", str(tmp_path / "cache-file"))
    result = run_main("evaluate", run, "--iw-samples", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "the classifier cache" in result.stdout + result.stderr
    assert "frechet_distance" in json.load(open(run / "eval.json"))["sample_quality"]
