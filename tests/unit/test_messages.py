"""mnist_vae/messages.py: the lines a user reads in more than one place, worded once and worded right."""
import pytest

from mnist_vae import messages

pytestmark = pytest.mark.backend_independent


def test_counts_agree_with_their_number():
    assert [messages.count(n, "epoch") for n in (0, 1, 2, 60000)] == ["0 epochs", "1 epoch", "2 epochs",
                                                                     "60,000 epochs"]
    assert [messages.count(n, "pass") for n in (1, 3)] == ["1 pass", "3 passes"]
    assert messages.count(1, "test image") == "1 test image"


def test_a_model_of_unknown_age_is_named_as_such():
    assert messages.model_of_epoch(7) == "the model of epoch 7"
    assert messages.model_of_epoch(None) == "the saved model (its epoch unknown)"


def test_the_mutual_information_note_says_when_the_estimate_left_its_bounds():
    inside = {"kl_loss": 10.0, "images": 2000, "mutual_information": 3.0}
    assert messages.mutual_information_note(inside) == "0 = z ignores x; at most the KL, and log N = 7.60"
    outside = messages.mutual_information_note({**inside, "mutual_information": -1.0})
    assert outside.startswith("this estimate fell outside its bounds [0, 7.60]")
