"""mnist_vae/console.py: the summary says when the mutual information estimate falls outside its bounds."""
import pytest

pytestmark = pytest.mark.backend_independent


def test_the_console_says_when_the_mutual_information_estimate_falls_outside_its_bounds():
    from mnist_vae import console

    results = {"images": 2000, "negative_elbo": 100.0, "negative_elbo_stderr": 1.0, "reconstruction_loss": 90.0,
               "reconstruction_loss_stderr": 1.0, "kl_loss": 10.0, "kl_loss_stderr": 0.1, "iw_samples": 5,
               "nll_iw": 99.0, "nll_iw_stderr": 1.0, "active_units": 1, "kl_per_dim": [10.0], "active_threshold": 0.01,
               "mutual_information": -12.3, "mutual_information_stderr": 6.8, "seconds": 1.0}
    text = console.summary(results, "none")
    assert "outside its bounds [0, 7.60]" in text
    inside = console.summary({**results, "mutual_information": 3.0}, "none")
    assert "outside its bounds" not in inside
