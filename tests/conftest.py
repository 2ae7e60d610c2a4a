import atexit
import contextlib
import importlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.path.join(ROOT, "..", "shared", "data", "mnist")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The reference classifiers the runs of this session train go into a folder of their own (never ~/.cache), where
# every run and program of the session on the same images reuses them; removed at the end.
os.environ["MNIST_VAE_CACHE"] = tempfile.mkdtemp(prefix="mnist-vae-test-cache-")
atexit.register(shutil.rmtree, os.environ["MNIST_VAE_CACHE"], True)
sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def mnist_test_split():
    """The real MNIST test split (uint8 images (10000, 28, 28, 1), labels), or a skip."""
    if not os.path.isdir(MNIST_DIR):
        pytest.skip(f"real MNIST not found at {MNIST_DIR} (the project's shared data folder)")
    from mnist_vae import data

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
        from mnist_vae import data

        return data.load_idx_folder(MNIST_DIR)["test"][:2]
    return synthetic_digits(4000)


def write_npz(folder, name, digits, train, test):
    """A Keras-layout .npz of the first `train` digits and the last `test` ones; returns its path."""
    x, y = digits
    path = str(folder / name)
    np.savez(path, x_train=x[:train, ..., 0], y_train=y[:train], x_test=x[-test:, ..., 0], y_test=y[-test:])
    return path


@pytest.fixture(scope="session")
def small_npz(tmp_path_factory, digits):
    """320 training and 80 test digits."""
    return write_npz(tmp_path_factory.mktemp("data"), "small.npz", digits, 320, 80)


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium driven by Selenium (Debian's chromium and chromium-driver), or a skip."""
    if CHROMIUM is None or CHROMEDRIVER is None or importlib.util.find_spec("selenium") is None:
        pytest.skip("needs Chromium, its driver and Selenium (apt-get install chromium chromium-driver; pip install "
                    "selenium; .ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # As root, in a machine whose network is closed: no sandbox, no background connections.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1200,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def open_page(browser, path, fragment=""):
    """Open a page written to disk; it must start (its script sets body's data-ready)."""
    browser.get("about:blank")  # a new document even when only the fragment changes
    browser.get("file://" + os.path.abspath(path) + fragment)
    assert browser.execute_script("return document.body.dataset.ready") == "true", browser.get_log("browser")


TINY = ["--hidden", "32", "--batch-size", "64", "--iw-samples", "5"]  # a run of a few seconds


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, small_npz):
    """A finished two-epoch run of a tiny model (copy it before changing it)."""
    out = tmp_path_factory.mktemp("runs")
    result = run_main("train", "--data", small_npz, "--epochs", "2", *TINY, "--out", out, "--run-name", "done")
    assert result.returncode == 0, result.stderr
    return str(out / "done")


def start_program(script, *args):
    """python SCRIPT ARGS started in the background, as a user starts it."""
    return subprocess.Popen([sys.executable, os.path.join(ROOT, script), *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epoch(run_dir, epoch, proc, timeout=180):
    """Wait until proc has checkpointed `epoch` in run_dir."""
    path = os.path.join(run_dir, "checkpoint", "state.json")
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.load(open(path))["epoch"] >= epoch:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"epoch {epoch} was not checkpointed in time (exit code {proc.poll()})")


def gif_frames(path):
    from PIL import Image

    with Image.open(path) as image:
        return image.n_frames


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


def read_history(run_dir):
    """history.csv as a list of rows, each {column: float, or None for an empty cell}: the one reader of it in
    the tests."""
    import csv

    with open(os.path.join(run_dir, "history.csv")) as f:
        return [{k: float(v) if v != "" else None for k, v in row.items()} for row in csv.DictReader(f)]


def checkpoint_arrays(run_dir):
    state = json.load(open(os.path.join(run_dir, "checkpoint", "state.json")))
    with np.load(os.path.join(run_dir, "checkpoint", state["weights"])) as saved:
        return {name: saved[name] for name in saved.files}


def mount(*args):
    """mount ARGS (root only): True when it worked."""
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


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


def loss_terms(vae, inputs, training=False):
    """(reconstruction, kl, loss) per image for one forward pass of vae on inputs (VAE.loss_terms)."""
    return vae.loss_terms(inputs, vae(inputs, training=training))


def per_example_losses(vae, inputs, training=False):
    """(reconstruction, kl) per image for z drawn from q(z|x): the single-sample ELBO's terms."""
    return loss_terms(vae, inputs, training)[:2]


def to_numpy(tensor):
    import keras

    return keras.ops.convert_to_numpy(tensor)
