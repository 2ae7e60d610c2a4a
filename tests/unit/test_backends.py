"""mnist_vae/backends.py: a backend named by keras.json that does not exist is blamed on keras.json."""
import pytest
from conftest import run_main

pytestmark = pytest.mark.backend_independent


def test_an_unknown_backend_named_by_keras_json_is_blamed_on_keras_json(tmp_path, monkeypatch, small_npz):
    (tmp_path / "keras.json").write_text('{"backend": "nonsense"}')
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    result = run_main("train", "--data", small_npz, "--out", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: unknown Keras backend 'nonsense' (from {tmp_path / 'keras.json'}); "
                                     "choose from tensorflow, jax, torch")
