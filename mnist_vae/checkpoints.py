"""Per-epoch checkpoints inside a run folder, written so that a crash at any moment loses nothing.

Layout, in <run>/checkpoint/:
    epoch-0007.variables.npz  every variable of the model (weights, KL weight, step counters, the sampling
                              stream) and of the optimizer after epoch 7, in their fixed order
    frames.npz                progress.gif's frames of epochs 1-7 (uint8), so a resumed run's GIF is whole
    state.json                {"epoch": 7, "weights": "epoch-0007.variables.npz", "history": [...],
                               "training_seconds": 93.4}: the wall time up to epoch 7's end, summed over the
                               sessions a resumed run took (each from its training's start), so a run's time
                               survives --resume
Each epoch writes the new variables file, then the frames, then <run>/history.csv, then state.json, each to a
temporary name renamed into place; state.json is the commit point and the older variables file goes last. Keras'
BackupAndRestore and CSVLogger write in place, which a kill mid-write leaves half-written: hence this.

The variables are copied out at the end of the epoch (milliseconds) and written by a background thread while
the next epoch trains: Keras' save_weights cost a large share of a dense model's epoch (docs/performance.md).
One write is in flight at most; the next epoch's end, the end of training and any error wait for it.
"""
import csv
import io
import math
import os
import threading
import time

import keras
import numpy as np
from keras import ops

from mnist_vae.rundir import RunError, atomic_write, best_epoch, ensure_space, read_state, write_json
from model import LOSS_TERMS

# val_: the test set; validation_: the slice held out of the training images (--validation), when there is one.
HISTORY_COLUMNS = ("epoch", *LOSS_TERMS, *("val_" + term for term in LOSS_TERMS),
                   *("validation_" + term for term in LOSS_TERMS), "kl_weight", "learning_rate",
                   "test_nll_iw", "test_nll_iw_stderr")  # the last two: staged runs, at each stage's end only
FROM_LOGS = [c for c in HISTORY_COLUMNS if c not in ("epoch", "kl_weight")]


def _dir(run_dir):
    return os.path.join(run_dir, "checkpoint")


def restore(vae, run_dir, state):
    """Load the checkpoint's weights, optimizer state and sampling stream into a compiled vae."""
    if not vae.optimizer.built:
        vae.build_optimizer()  # its variables must exist to receive the state
    path = os.path.join(_dir(run_dir), state["weights"])
    try:
        load_variables(vae, path)
    except Exception as e:  # zipfile/OSError/ValueError: a damaged or mismatched file
        reason = str(e).splitlines()[0] if str(e) else ""
        raise RunError(f"{path}: cannot load checkpoint ({e.__class__.__name__}: {reason})") from None


def restore_best(vae, run_dir):
    """Load the best epoch's weights that early stopping kept (state.json's best_weights) into vae; returns
    that epoch, or None where the checkpoint names none."""
    state = read_state(run_dir)
    if not state or not state.get("best_weights"):
        return None
    restore(vae, run_dir, {**state, "weights": state["best_weights"]})
    return best_epoch(state)


def checkpointed_variables(vae):
    """What a checkpoint holds, in a fixed order, named for people: the model's variables (layers' weights, the
    KL weight, the step counters, the sampling layer's seed state), then the optimizer's."""
    owned = [("model", v) for v in vae.variables] + [("optimizer", v) for v in vae.optimizer.variables]
    return [(f"{i:04d}/{owner}/{v.path}", v) for i, (owner, v) in enumerate(owned)]


def snapshot(vae):
    """{name: value copied to NumPy} of every checkpointed variable."""
    return {name: np.array(ops.convert_to_numpy(v.value)) for name, v in checkpointed_variables(vae)}


def write_variables(path, arrays):
    """Write a snapshot (atomically)."""
    return atomic_write(path, lambda tmp: np.savez(tmp, **arrays))


def load_variables(vae, path):
    """Assign a snapshot written by write_variables to a model of the same architecture, on any backend. The
    arrays go by their order: layer names (conv2d_3) depend on what else a process built before."""
    variables = [v for _, v in checkpointed_variables(vae)]
    with np.load(path, allow_pickle=False) as saved:
        arrays = [saved[name] for name in sorted(saved.files)]
    if len(arrays) != len(variables) or any(tuple(a.shape) != tuple(v.shape) for a, v in zip(arrays, variables)):
        raise ValueError(f"its {len(arrays)} arrays do not fit this model's {len(variables)} variables")
    for variable, array in zip(variables, arrays):
        variable.assign(array.astype(variable.dtype))


def read_frames(run_dir, epochs):
    """progress.gif's frames of epochs 1..epochs as floats in [0, 1]; None where none was kept (no frames.npz,
    or an epoch whose frame was not drawn)."""
    try:
        with np.load(os.path.join(_dir(run_dir), "frames.npz")) as saved:
            pixels, kept = saved["pixels"], saved["kept"]
    except (OSError, ValueError, KeyError):
        pixels, kept = None, np.zeros(0, bool)
    return [pixels[i].astype(np.float32) / 255 if i < len(kept) and kept[i] else None for i in range(epochs)]


def write_frames(run_dir, frames):
    kept = np.array([f is not None for f in frames])
    shape = next(f for f in frames if f is not None).shape
    pixels = np.stack([np.zeros(shape, np.uint8) if f is None else np.round(np.asarray(f) * 255).astype(np.uint8)
                       for f in frames])
    atomic_write(os.path.join(_dir(run_dir), "frames.npz"), lambda tmp: np.savez(tmp, pixels=pixels, kept=kept))


def history_columns(rows):
    """{column: [values per epoch]} from history rows."""
    return {key: [row.get(key) for row in rows] for key in HISTORY_COLUMNS if any(key in row for row in rows)}


def write_history(run_dir, rows):
    text = io.StringIO()
    # The columns the epochs have: validation_* only for a run with --validation; test_nll_iw only for a staged
    # run, empty but at the end of each stage.
    writer = csv.DictWriter(text, fieldnames=[c for c in HISTORY_COLUMNS if not rows or any(c in r for r in rows)],
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            f.write(text.getvalue())
    atomic_write(os.path.join(run_dir, "history.csv"), write)


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch with a finite loss: checkpoint, history.csv and state.json, atomically; written in the
    background (see the top of this file). `rows` are the committed epochs; wait() ends the write in flight."""

    def __init__(self, run_dir, rows=(), frames=None, best_epoch_of=None, best=None, training_seconds=0.0):
        super().__init__()
        self.run_dir = run_dir
        self.rows = list(rows)  # history of the epochs completed so far, earlier sessions included
        # With early stopping: best_epoch_of(rows) names the best epoch, whose weights are kept beside the last
        # epoch's (best: the file of the best so far, from the checkpoint a resumed run starts from).
        self.best_epoch_of, self.best = best_epoch_of, best
        self.frames = frames  # progress.gif's frames so far, one per epoch (callbacks.SampleFrames.frames)
        self.epoch = None
        self.checkpoint_bytes = 0  # size of the last checkpoint: the room the next one needs
        self.diverged = None  # (epoch, batch), both 1-based, where the loss stopped being finite
        self.batches_done = None  # in the epoch in progress
        self.writer, self.error = None, None  # the write in flight, and how the last one failed
        # Wall time of the committed epochs, earlier sessions included; this session's clock starts at train begin.
        # None: resumed from a checkpoint that did not keep it, whose earlier sessions' time is then unknown.
        self.training_seconds = self._seconds_before = training_seconds
        self._session_began = time.monotonic()
        os.makedirs(_dir(run_dir), exist_ok=True)

    def wait(self):
        """Let the write in flight finish; raise the error it met, if any (once)."""
        if self.writer is not None:
            self.writer.join()
            self.writer = None
        error, self.error = self.error, None
        if error is not None:
            raise error

    def on_train_begin(self, logs=None):
        self._seconds_before, self._session_began = self.training_seconds, time.monotonic()

    def on_train_end(self, logs=None):
        self.wait()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.batches_done = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches_done = batch + 1  # with several steps per call, batch is the call's last step

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        finite = all(math.isfinite(float(v)) for k, v in logs.items() if k.endswith("loss"))
        if finite and self.batches_done is not None and self.batches_done < self.params["steps"]:
            return  # stopped mid-epoch (a signal): the epoch is incomplete, never checkpoint it
        if not finite:
            step = int(ops.convert_to_numpy(self.model.first_nonfinite_step.value))
            self.diverged = (epoch + 1, step - epoch * self.params["steps"] + 1 if step >= 0 else None)
            return  # never checkpoint a broken model
        row = {"epoch": epoch + 1, **{k: float(logs[k]) for k in FROM_LOGS if k in logs},
               "kl_weight": float(ops.convert_to_numpy(self.model.kl_weight.value))}
        seconds = (None if self._seconds_before is None else
                   float(self._seconds_before) + time.monotonic() - self._session_began)
        arrays = snapshot(self.model)  # now, before the next epoch changes them
        frames = list(self.frames) if self.frames else None
        self.wait()
        rows = self.rows + [row]
        best = self.best_epoch_of is not None and self.best_epoch_of(rows) == len(rows)  # this epoch is the best
        ensure_space(_dir(self.run_dir), (2 if best else 1) * (self.checkpoint_bytes or
                                                               sum(a.nbytes for a in arrays.values())))
        self.writer = threading.Thread(target=self._commit, args=(rows, arrays, frames, best, seconds),
                                       name="checkpoint")
        self.writer.start()

    def _commit(self, rows, arrays, frames, best=False, seconds=None):
        try:
            folder = _dir(self.run_dir)
            name = f"epoch-{len(rows):04d}.variables.npz"
            path = write_variables(os.path.join(folder, name), arrays)
            self.checkpoint_bytes = os.path.getsize(path)
            best_name = f"best-epoch-{len(rows):04d}.variables.npz" if best else self.best
            if best:  # a file of its own, named in state.json only once it is whole
                write_variables(os.path.join(folder, best_name), arrays)
            if frames and len(frames) == len(rows) and any(f is not None for f in frames):
                write_frames(self.run_dir, frames)
            write_history(self.run_dir, rows)
            write_json(os.path.join(folder, "state.json"), {"epoch": len(rows), "weights": name, "history": rows,
                                                            **({} if seconds is None else
                                                               {"training_seconds": round(seconds, 2)}),
                                                            **({"best_weights": best_name} if best_name else {})})
            self.rows, self.best, self.training_seconds = rows, best_name, seconds  # committed
            for old in os.listdir(folder):
                if (old.startswith("epoch-") and old != name) or (old.startswith("best-epoch-") and old != best_name):
                    os.remove(os.path.join(folder, old))
        except BaseException as e:  # handed to the main thread by wait()
            self.error = e
