"""Progress of a long phase (the importance-weighted bound of evaluate.py and of a run's end): Keras' own
progress bar on a terminal, moving with every call into the backend, and plain lines every EVERY seconds into a
file or a pipe (nohup, tee, CI logs), so a log shows that the program is alive and when the phase will end.
A phase expected to last more than LONG seconds says so once, from its first seconds, with the way to shorten it.
Pure Python at import (Keras' Progbar is imported when a terminal needs it).
"""
import sys
import time

EVERY = 15.0  # seconds between plain progress lines in a file or a pipe
FIRST = 5.0  # the first plain line: once the phase has run this long (a short phase prints none)
LONG = 600.0  # a phase expected to last longer is announced, with the way to shorten it


def duration(seconds):
    """'45 s', '12 min', '3.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """`progress = Progress("the bound", 10000, "image")`, then `progress.update(done)` as the work moves
    (done may be fractional: part of a batch). shorter(seconds): the way to make a phase of that length
    shorter, for the one line said of a long phase (None: nothing to say)."""

    def __init__(self, what, total, unit, shorter=None, out=None, clock=time.monotonic):
        self.what, self.total, self.unit, self.shorter = what, total, unit, shorter
        self.out, self.clock = out or sys.stdout, clock
        self.started = self.last_line = clock()
        self.anchor = None  # (time, done) at the first update: the pace is measured from there (not compiling)
        self.announced = False
        self.bar = None
        if self.out.isatty():
            import keras

            print(f"{what}:", file=self.out, flush=True)
            self.bar = keras.utils.Progbar(total, unit_name=unit)

    def left(self, done, now):
        """Seconds left at the pace since the first update (None until there is one to measure from)."""
        if self.anchor is None or done <= self.anchor[1] or now <= self.anchor[0]:
            return None
        return (now - self.anchor[0]) * (self.total - done) / (done - self.anchor[1])

    def update(self, done):
        now = self.clock()
        if self.anchor is None:
            self.anchor = (now, done)
        left = self.left(done, now)
        if left is not None and not self.announced and now - self.anchor[0] >= 1.0:
            self.announced = True
            if now - self.started + left > LONG:
                hint = self.shorter(now - self.started + left) if self.shorter else None
                print(f"{self.what}: about {duration(now - self.started + left)} at this pace"
                      + (f"; {hint}" if hint else ""), file=self.out, flush=True)
        if self.bar is not None:
            self.bar.update(done)
        elif left is not None and now - self.started >= FIRST and now - self.last_line >= (
                EVERY if self.last_line > self.started else FIRST):
            self.last_line = now
            print(f"{self.what}: {done / self.total:.0%} of {self.total:,} {self.unit}s, "
                  f"{duration(now - self.started)} so far, about {duration(left)} left", file=self.out, flush=True)
