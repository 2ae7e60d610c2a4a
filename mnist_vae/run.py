"""A run's life in its folder, from creating (or resuming) it to the exit code: `with Run(config, devices) as run:`.

Entering creates the folder (or takes the one --resume names), locks it, removes what a killed process left
behind, gives a non-chief worker a scratch copy to write into, and installs the signal handlers. Inside, the
run trains (train.py's fit, inside run.training) and run.conclude writes what it earned and picks the exit
code. Leaving cleans up, in one place (_clean_up), whether the run finished, failed or was stopped by a signal.
"""
import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import time

from mnist_vae import messages
from mnist_vae.data import fingerprint
from mnist_vae.presets import staged_passes
from mnist_vae.rundir import (
    CONFIG_FORMAT,
    RunError,
    RunLock,
    make_run_dir,
    remove_if_empty,
    remove_stale_temporaries,
    write_error,
    write_json,
)
from mnist_vae.runfolder import RunFolder
from mnist_vae.stopping import SignalGuard


class Run:
    def __init__(self, config, devices):
        self.settings, self.devices = config, devices  # settings: the run's config.Config
        self.resumed = bool(config.resume)
        self.dir = config.resume
        self.scratch = None
        self.started = time.time()
        self.seconds = {}  # where the time went: start-up, training, then write_outputs' parts
        self.trained = False  # the history decides that no epoch is left to train (nothing_to_do sets it)
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        try:
            return self._enter(self._stack.__enter__())
        except BaseException:  # a with-block whose entry fails never exits: clean up here
            self._stack.__exit__(*sys.exc_info())
            raise

    def _enter(self, stack):
        config, devices = self.settings, self.devices
        if not self.resumed and devices.chief:  # the output folder is checked before any time is spent
            self.dir = make_run_dir(config.out, config.run_name, label=f"{config.arch}-z{config.latent_dim}")
        stack.callback(self._clean_up)
        if devices.chief:  # one writer per run folder: the chief holds it to the end
            stack.enter_context(RunLock(self.dir))
            if self.resumed:
                remove_stale_temporaries(self.dir)
        else:  # other workers write into a copy, thrown away at the end
            self.scratch = tempfile.mkdtemp(prefix=f"mnist-vae-{devices.worker.type}{devices.worker.index}-")
            if self.resumed:
                shutil.copytree(self.dir, self.scratch, dirs_exist_ok=True)
            self.dir = self.scratch
        self.folder = RunFolder(self.dir)  # what the folder holds (a non-chief worker's: its scratch copy)
        self.resume = messages.resume_command(self.dir, devices.chief)
        self.guard = stack.enter_context(SignalGuard(self._interrupted, self._clean_up))
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)

    def _clean_up(self):
        if not self.resumed and self.devices.chief:
            remove_if_empty(self.dir)  # nothing was earned: leave no empty folder behind
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _interrupted(self, name):  # a signal outside fit: loading, compiling, or the final evaluation and figures
        if os.path.exists(os.path.join(self.dir, "checkpoint", "state.json")):
            return (f"interrupted by {name}; every completed epoch is in the run's checkpoint; continue with: "
                    f"{self.resume}")
        if os.path.exists(os.path.join(self.dir, "config.json")):  # the folder stays: its name is taken
            return f"interrupted by {name} before the first epoch completed; start it again with: {self.resume}"
        return f"interrupted by {name} before the first epoch completed"

    def nothing_to_do(self, done):
        """Whether the run has nothing left to do, given the epochs done: True (and it says so) when every planned
        epoch is trained, or early stopping has ended the run, and the outputs are written; False when epochs
        remain, or only outputs (it says so). Sets self.trained: whether the history already decides that no
        epoch is left to train (all trained, or stopped early), so that fit trains none."""
        config = self.settings
        chosen = self.folder.early_stopping if done and config.early_stopping else None
        stopped_early = bool(chosen and chosen["stopped_early"])
        self.trained = done >= config.epochs or stopped_early
        if not self.trained:
            return False
        if config.epochs < done:
            asked = f"--epochs {config.epochs}"
            if config.lr_schedule == "staged" and config.epochs == staged_passes(config.stages):
                asked = f"--stages {config.stages} ({messages.count(config.epochs, 'pass')})"
            raise RunError(f"{asked}: {self.dir} has trained {messages.count(done, 'epoch')} already; --resume "
                           f"continues a run (--epochs {done} or more), it never shortens one")
        if self.folder.is_complete(done):
            how = (messages.stopped_early(chosen) if stopped_early
                   else f"To train on: {self.resume} --epochs {done + 10}")
            print(f"{self.dir} is complete ({messages.count(done, 'epoch')}; model.keras, metrics.json, eval.json and "
                  f"report.html are written); nothing to do. {how}")
            return True
        why = f" ({messages.stopped_early(chosen)})" if stopped_early else ""
        print(f"{'all ' if done > 1 and not stopped_early else ''}{messages.count(done, 'epoch')} of {self.dir} "
              f"{'are' if done > 1 else 'is'} trained{why}; writing the outputs it is missing")
        return False

    def write_config(self, splits, versions, command):
        """config.json: the settings, the data's sizes and fingerprint, the versions, the reproduce command."""
        self.record = {**self.settings.as_dict(), "resume": None, "format": CONFIG_FORMAT, "run_dir": self.dir,
                       "data_source": splits.source, "train_images": len(splits.x_train),
                       "test_images": len(splits.x_test), "data_sha256": fingerprint(splits), "versions": versions,
                       "command": command}
        write_json(os.path.join(self.dir, "config.json"), self.record)
        return self.record

    @property
    def verbose(self):
        """fit's verbosity: a progress bar on a terminal, one line per epoch in a log."""
        return 1 if sys.stdout.isatty() else 2

    @contextlib.contextmanager
    def training(self, saver):
        """Around fit: the training's time, and a full disk or a lost worker as one line saying what is kept
        (a signal is the guard's: fit stops at the step, and conclude says what was kept)."""
        began = self.seconds["start-up"] = time.time() - self.started
        try:
            yield
            if self.guard.stopped and saver.epoch is not None and len(saver.rows) <= saver.epoch:
                # Keras printed the stopped epoch's line as if it had finished: say that it is not kept.
                print(f"epoch {saver.epoch + 1} was stopped part-way: the numbers printed for it are discarded; "
                      f"{len(saver.rows)} completed epochs are kept")
            self.seconds["training"] = time.time() - self.started - began
        except OSError as e:
            with contextlib.suppress(OSError):
                saver.wait()  # a write in flight may still commit an epoch
            raise RunError(write_error(e, f"the checkpoint of epoch {len(saver.rows)} is intact", self.resume)) \
                from None
        except Exception as e:
            if not self.devices.is_lost_worker(e):
                raise
            reason = next((line for line in str(e).splitlines() if "unhealthy" in line or "abort" in line),
                          e.__class__.__name__)
            raise RunError(f"another worker stopped or became unreachable ({reason.strip()}); {len(saver.rows)} "
                           f"completed epochs are checkpointed: restart every worker with {self.resume}") from None

    def conclude(self, vae, splits, saver, frames, steps):
        """The one place that decides how the run ends (completed, stopped by a signal, or diverged), writes
        what it earned and returns the exit code. frames: progress.gif's frames so far."""
        from mnist_vae.outputs import write_outputs

        epochs_kept, interrupted, diverged = len(saver.rows), self.guard.stopped, saver.diverged
        complete = interrupted is None and diverged is None
        if not complete:
            self.guard.saving()  # write what the completed epochs earned even if a signal comes again
        if interrupted and self.devices.multiworker:
            # The other workers are mid-step, waiting for this one: nothing collective can run any more.
            print(f"interrupted by {interrupted} after {epochs_kept} completed epochs, all checkpointed; the other "
                  f"workers stop too; continue by restarting every worker with {self.resume}", file=sys.stderr)
            return 128 + interrupted.signum
        try:
            metrics, results, written, skipped = write_outputs(
                vae, self.dir, splits, saver.rows, self.settings, self.record, complete,
                frames=frames[:epochs_kept], seconds=self.seconds)  # no broken epoch's frame
        except OSError as e:
            raise RunError(write_error(e, messages.all_epochs(epochs_kept, "checkpointed"),
                                       f"{self.resume} completes the run")) from None
        if self.devices.multiworker:
            print(f"{self.devices.worker.type} {self.devices.worker.index}: weights after epoch {epochs_kept} have "
                  f"sha256 {weights_digest(vae)} (the same on every worker)")
        if interrupted:
            print(f"interrupted by {interrupted} after {epochs_kept} completed epochs, all saved; continue with: "
                  f"{self.resume}", file=sys.stderr)
            return 128 + interrupted.signum
        if diverged:
            epoch, batch = diverged
            kept = f"kept the checkpoint and plots of epoch {epochs_kept}" if epochs_kept else "no epoch had completed"
            raise RunError(f"the loss became NaN or infinite in epoch {epoch}, batch {batch} of {steps}; {kept}; "
                           f"try a lower --lr than {self.settings.lr}")
        self._summary(splits, metrics, results, written, skipped, saver.training_seconds)
        return 0

    def _summary(self, splits, metrics, results, written, skipped, training_seconds=None):
        from mnist_vae import console
        from mnist_vae.progress import duration
        from mnist_vae.settings import preset_overrides
        from model import LOSS_TERMS

        parts = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.seconds.items())
        terms = ", ".join(f"{k} {metrics[k]:.2f}" for k in LOSS_TERMS)
        images = messages.count(len(splits.x_test), "image")
        # A resumed run's session is part of it: say the training's time over every session too.
        overall = (f"; training over every session {duration(training_seconds)}"
                   if self.resumed and training_seconds is not None else "")
        print(f"\ndone in {time.time() - self.started:.0f} s ({parts}{overall}). Test set ({images}, "
              f"nats per image, binarize={self.settings.binarize}): {terms}")
        stopping = messages.early_stopping_line((results or {}).get("early_stopping"))
        print(stopping) if stopping else None
        print(console.summary(results, self.settings.binarize, self.settings.preset,
                              preset_overrides(self.settings.as_dict())))
        if not self.devices.chief:
            print("(this worker's copy of the outputs is discarded: the chief writes the run)")
            return
        for name, why in skipped.items():
            print(f"  ({name} skipped: {why})")
        print(messages.open_line(self.dir, len(written)))


def weights_digest(vae):
    """A short fingerprint of every weight, to check that all workers ended with the same model."""
    digest = hashlib.sha256()
    for value in vae.get_weights():
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]
