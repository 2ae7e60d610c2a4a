import contextlib
import importlib
import io
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.path.join(ROOT, "..", "shared", "data", "mnist")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def mnist_test_split():
    """The real MNIST test split (uint8 images (10000, 28, 28, 1), labels), or a skip."""
    if not os.path.isdir(MNIST_DIR):
        pytest.skip(f"real MNIST not found at {MNIST_DIR} (the project's shared data folder)")
    import data

    found = data.load_idx_folder(MNIST_DIR)
    return found["test"][:2]


def synthetic_digits(n, seed=0):
    """n images (uint8, (n, 28, 28, 1)) of the digits 0-9 drawn with Pillow's built-in font at random sizes
    and places, and their labels: digit-like enough for a VAE to learn from where real MNIST is absent."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    font = ImageFont.load_default()
    glyphs = []
    for digit in range(10):
        glyph = Image.new("L", (14, 16), 0)
        ImageDraw.Draw(glyph).text((3, 1), str(digit), fill=255, font=font)
        glyphs.append(glyph.crop(glyph.getbbox()))
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = np.zeros((n, 28, 28, 1), np.uint8)
    for i, digit in enumerate(labels):
        height = int(rng.integers(14, 23))
        width = max(4, int(height * glyphs[digit].width / glyphs[digit].height))
        glyph = glyphs[digit].resize((width, height), Image.BILINEAR)
        canvas = Image.new("L", (28, 28), 0)
        canvas.paste(glyph, (int(rng.integers(2, 27 - width)), int(rng.integers(2, 27 - height))))
        images[i, ..., 0] = np.asarray(canvas)
    return images, labels


@pytest.fixture(scope="session")
def digits():
    """Digits for end-to-end tests: the real MNIST test split (uint8 (N, 28, 28, 1), labels), or 4,000
    synthetic ones where the shared data folder is absent."""
    if os.path.isdir(MNIST_DIR):
        import data

        return data.load_idx_folder(MNIST_DIR)["test"][:2]
    return synthetic_digits(4000)


@pytest.fixture(scope="session")
def small_npz(tmp_path_factory, digits):
    """A Keras-layout .npz of 320 training and 80 test digits."""
    x, y = digits
    path = str(tmp_path_factory.mktemp("data") / "small.npz")
    np.savez(path, x_train=x[:320, ..., 0], y_train=y[:320], x_test=x[-80:, ..., 0], y_test=y[-80:])
    return path


def run_program(script, *args, timeout=300, env=None):
    """python SCRIPT ARGS in a fresh process, as a user runs it (for start-up, signals and locks)."""
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


def run_main(module, *args):
    """module.main(ARGS) in this process (train, evaluate): no second start-up of the backend. Returns
    what run_program returns: returncode, stdout, stderr (Python-level output)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = importlib.import_module(module).main([str(a) for a in args])
        except SystemExit as e:  # argparse's refusals
            code = e.code
    return SimpleNamespace(returncode=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())


def gradients(fn, *arrays):
    """d fn(*arrays) / d each array, as NumPy, through the running Keras backend's own autodiff (a test
    tool: the project itself leaves gradients to Keras' trainers). fn returns a scalar tensor."""
    import keras

    arrays = [np.asarray(a, np.float32) for a in arrays]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        variables = [tf.Variable(a) for a in arrays]
        with tf.GradientTape() as tape:
            total = fn(*variables)
        return [g.numpy() for g in tape.gradient(total, variables)]
    if backend == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(fn, argnums=tuple(range(len(arrays))))(*arrays)]
    import torch

    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    fn(*tensors).backward()
    return [t.grad.numpy() for t in tensors]


def to_numpy(tensor):
    import keras

    return keras.ops.convert_to_numpy(tensor)
