"""mnist_vae/early_stopping.py: the best epoch and the stop, from the history (a run that stops early, end to end:
tests/programs/test_train_early_stopping.py)."""

import numpy as np
import pytest

from mnist_vae import early_stopping

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)


def rows(*losses):
    return [{"epoch": i + 1, "validation_loss": v} for i, v in enumerate(losses)]


@pytest.mark.backend_independent
def test_the_best_epoch_and_the_stop_come_from_the_history():
    assert early_stopping.progress(rows(5, 4, 4.5, 4.2), patience=2) == (4, 2, True)
    assert early_stopping.progress(rows(5, 4, 4.5), patience=2) == (4, 2, False)
    assert early_stopping.progress(rows(5, 4, 4.0, 4.0), patience=3)[:2] == (4, 2)  # a tie is no improvement
    assert early_stopping.progress(rows(5, 4, 3), patience=0)[2] is False  # 0: off
    # the warm-up's epochs are not judged: epoch 2's low loss, under a KL weight below 1, does not count
    assert early_stopping.progress(rows(9, 1, 6, 7, 8), patience=2, warmup=2) == (6, 3, True)
    assert early_stopping.progress(rows(9, 1), patience=1, warmup=2) == (np.inf, None, False)
    # no epoch judged (a warm-up longer than the run): no best value, rather than an infinity JSON cannot hold
    assert early_stopping.summary(rows(9, 1), 1, warmup=2)["best_validation_loss"] is None
    summary = early_stopping.summary(rows(5, 4, 4.5, 4.2), 2)
    assert summary == {"patience": 2, "chosen_epoch": 2, "best_validation_loss": 4, "trained_epochs": 4,
                       "stopped_early": True}
