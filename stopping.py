"""Stopping a run safely on SIGINT (Ctrl-C) or SIGTERM.

Inside `fit`, a signal only asks Keras to stop after the batch in progress: an exception raised from a
signal handler lands wherever Python happens to be, and some C code clears it (seen on JAX: NumPy's
conversion of a log value swallowed it, and the run went on to the end). Outside `fit` (loading data,
the final evaluation and figures) the handler raises `Interrupted`, a BaseException like
KeyboardInterrupt, so that no library's `except Exception` swallows it. Once saving has begun, further
signals are ignored. The handlers in force before are restored when the run ends.
"""
import signal
import sys

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM: stop, keep what was earned, exit 128 + the signal number."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalGuard:
    """Installs the handlers for the duration of a `with` block."""

    def __init__(self):
        self.in_fit = False
        self.signum = None  # the signal that asked training to stop, if any
        self._previous = {}

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame):
        if self.in_fit:
            if self.signum is None:
                self.signum = signum
                print(f"\n{signal.Signals(signum).name}: stopping after this batch; saving what the completed "
                      "epochs earned...", file=sys.stderr, flush=True)
            return
        raise Interrupted(signum)

    def saving(self):
        """From here on, signals are ignored: the last completed epoch's outputs are being written."""
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)

    def callback(self):
        """A Keras callback that stops fit after the batch in which a signal arrived."""
        import keras

        guard = self

        class StopOnSignal(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                guard.in_fit = True

            def on_train_batch_end(self, batch, logs=None):
                if guard.signum is not None:
                    self.model.stop_training = True

            def on_train_end(self, logs=None):
                guard.in_fit = False

        return StopOnSignal()

    @property
    def stopped(self):
        return None if self.signum is None else Interrupted(self.signum)
