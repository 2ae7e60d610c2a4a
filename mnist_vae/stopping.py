"""Stopping a run safely on SIGINT (Ctrl-C) or SIGTERM.

Inside `fit`, a signal only asks Keras to stop after the batch in progress. Outside `fit` (loading data,
the final evaluation and figures, evaluate.py) the process ends at once, after `cleanup`: every file is
written atomically (rundir.atomic_write), so each is either the old one or the new one, and the temporary
file of a write in flight is removed here. No exception is raised from the handler: it would land
wherever Python happens to be, and some code swallows it (seen: JAX's garbage-collection hook printed
"Exception ignored ... KeyboardInterrupt" and the program went on; NumPy's conversion of a log value
cleared it). Once saving has begun, further signals are ignored. The handlers in force before are
restored when the block ends (after a stop, repeats stay ignored while the program ends).
"""
import os
import signal
import sys

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted:
    """The signal that stopped a run: its name, and the exit code 128 + its number."""

    def __init__(self, signum):
        self.signum, self.name = signum, signal.Signals(signum).name

    def __str__(self):
        return self.name


def remove_autograph_files():
    """TensorFlow's autograph writes each converted function to a temporary .py file that it deletes only at a
    normal exit; a signal ends the process without one, so remove this process's own (sys.modules names them)."""
    for name, module in list(sys.modules.items()):
        if name.startswith("__autograph_generated_file") and getattr(module, "__file__", None):
            try:
                os.remove(module.__file__)
            except OSError:
                pass


class SignalGuard:
    """Installs the handlers for the duration of a `with` block.

    message(signal name) is the line printed when a signal ends the process outside fit; cleanup() runs
    before it (removing what must not be left behind)."""

    def __init__(self, message=lambda name: f"interrupted by {name}", cleanup=None):
        self.message, self.cleanup = message, cleanup
        self.in_fit = False
        self.signum = None  # the signal that asked training to stop, if any
        self._previous = {}

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc):
        if self.signum is not None:
            return  # a signal stopped the run: its repeats stay ignored while the program ends
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame):
        if self.in_fit or self.signum is not None:  # in fit, or a repeat after fit was asked to stop
            if self.signum is None:
                self.signum = signum
                print(f"\n{signal.Signals(signum).name}: stopping after this batch; saving what the completed "
                      "epochs earned...", file=sys.stderr, flush=True)
            return
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        try:
            from mnist_vae.rundir import remove_temporaries_in_flight

            remove_temporaries_in_flight()
            remove_autograph_files()
            if self.cleanup:
                self.cleanup()
        finally:
            sys.stdout.flush()
            print(f"\n{self.message(signal.Signals(signum).name)}", file=sys.stderr, flush=True)
            os._exit(128 + signum)

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
