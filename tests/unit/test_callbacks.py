"""mnist_vae/callbacks.py: the KL warm-up's weight per epoch."""
import pytest

from mnist_vae.callbacks import kl_weight_at

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)


def test_warmup_schedule():
    assert [kl_weight_at(e, 2.0, 4) for e in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert [kl_weight_at(e, 0.7, 0) for e in range(3)] == [0.7, 0.7, 0.7]
