"""mnist_vae/progress.py: a long phase is never silent in a log, says when it will end, and announces itself
when it will be long."""
import io

import pytest

from mnist_vae.progress import Progress, duration

pytestmark = pytest.mark.backend_independent


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_log_gets_a_plain_line_every_fifteen_seconds_with_the_time_left():
    clock, out = Clock(), io.StringIO()
    progress = Progress("the bound", 1000, "image", out=out, clock=clock)
    for second in range(1, 61):  # 10 images a second after the first update: 100 s in all
        clock.now += 1
        progress.update(10 * second)
    # At 5 s, then every 15 s (none in the first seconds); the pace is 10 images a second, compiling aside.
    assert out.getvalue().splitlines() == [
        "the bound: 5% of 1,000 images, 5 s so far, about 2 min left",
        "the bound: 20% of 1,000 images, 20 s so far, about 80 s left",
        "the bound: 35% of 1,000 images, 35 s so far, about 65 s left",
        "the bound: 50% of 1,000 images, 50 s so far, about 50 s left"]


def test_a_short_phase_prints_nothing_into_a_log():
    clock, out = Clock(), io.StringIO()
    progress = Progress("the bound", 10, "image", out=out, clock=clock)
    for done in range(1, 11):
        clock.now += 0.3
        progress.update(done)
    assert out.getvalue() == ""


def test_a_long_phase_says_how_long_and_how_to_shorten_it_once():
    clock, out = Clock(), io.StringIO()
    progress = Progress("the bound", 10_000, "image", out=out, clock=clock,
                        shorter=lambda seconds: f"a smaller k takes {duration(seconds / 50)}")
    progress.update(1)  # the first call (compiling) is not counted in the pace
    for done in range(2, 6):
        clock.now += 2  # 2 s an image: about 5.5 h for 10,000
        progress.update(done)
    first = out.getvalue().splitlines()[0]
    assert first == "the bound: about 5.6 h at this pace; a smaller k takes 7 min"
    assert sum("at this pace" in line for line in out.getvalue().splitlines()) == 1


def test_durations_read_as_a_person_says_them():
    assert [duration(s) for s in (4, 89, 600, 5399, 5400, 36000)] == ["4 s", "89 s", "10 min", "90 min", "1.5 h",
                                                                       "10.0 h"]
