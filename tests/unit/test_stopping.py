"""mnist_vae/stopping.py: a signal inside fit asks training to stop after the batch and is remembered; the
handlers in force before come back when the block ends; once saving begins, signals are ignored."""
import os
import signal

import pytest

from mnist_vae.stopping import SignalGuard

pytestmark = pytest.mark.backend_independent  # signal handlers only


def test_a_signal_in_fit_is_remembered_and_the_old_handlers_return(capsys):
    before = signal.getsignal(signal.SIGTERM)
    with SignalGuard() as guard:
        assert signal.getsignal(signal.SIGTERM) == guard._handle
        guard.in_fit = True
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to the main thread before kill returns here
        assert guard.stopped is not None and guard.stopped.name == "SIGTERM"
        assert guard.stopped.signum == signal.SIGTERM
    assert "SIGTERM: stopping after this batch" in capsys.readouterr().err
    # a stopped run keeps ignoring repeats while it ends: its handler stays
    assert signal.getsignal(signal.SIGTERM) == guard._handle
    signal.signal(signal.SIGTERM, before)
    with SignalGuard() as calm:
        pass
    assert calm.stopped is None and signal.getsignal(signal.SIGTERM) == before


def test_once_saving_has_begun_signals_are_ignored():
    before = signal.getsignal(signal.SIGINT)
    with SignalGuard() as guard:
        guard.saving()
        os.kill(os.getpid(), signal.SIGINT)  # ignored: neither a KeyboardInterrupt nor an exit
        assert guard.stopped is None
    assert signal.getsignal(signal.SIGINT) == before


def test_the_callback_stops_fit_after_the_batch_in_which_the_signal_came():
    import keras

    with SignalGuard() as guard:
        callback = guard.callback()
        callback.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
        callback.model.stop_training = False  # as fit sets it
        callback.on_train_begin()
        callback.on_train_batch_end(0)
        assert guard.in_fit and not callback.model.stop_training
        os.kill(os.getpid(), signal.SIGINT)
        callback.on_train_batch_end(1)
        assert callback.model.stop_training
        callback.on_train_end()
        assert not guard.in_fit
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
