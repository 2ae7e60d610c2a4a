"""mnist_vae/tensorboard.py: --tensorboard without TensorFlow is one line before anything starts."""
import importlib.util
import os
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.backend_independent


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs a backend other than TensorFlow: "
                                                                    "pip install -r requirements-backends.txt")
def test_tensorboard_without_tensorflow_is_one_line_before_anything_starts(tmp_path, small_npz):
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['tensorflow'] = None  # not installed\n")
    env = {**os.environ, "PYTHONPATH": str(blocker), "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--data", small_npz, "--tensorboard",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1 and result.stdout == "", result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        'error: --tensorboard writes its logs through TensorFlow (tf.summary), which is not installed: '
        'pip install "tensorflow>=2.16", or train without --tensorboard']
    assert not os.path.exists(tmp_path / "out")
