"""mnist_vae/run.py: a run's folder is created and locked on entry and left only when it earned something; a
resumed run that is complete says so; the workers' weights fingerprint."""
import os
from types import SimpleNamespace

import numpy as np
import pytest

from mnist_vae.config import resolve
from mnist_vae.run import Run, weights_digest
from mnist_vae.rundir import RunError

pytestmark = pytest.mark.backend_independent  # folders, locks and messages

CHIEF = SimpleNamespace(chief=True, multiworker=False)


def test_a_run_that_earned_nothing_leaves_no_folder_and_one_that_did_keeps_it(tmp_path):
    config, _ = resolve(["--out", str(tmp_path), "--run-name", "empty"])
    with Run(config, CHIEF) as run:
        assert os.path.isdir(run.dir) and os.path.exists(os.path.join(run.dir, ".lock"))
    assert not os.path.exists(tmp_path / "empty")  # nothing earned: no folder left behind
    config, _ = resolve(["--out", str(tmp_path), "--run-name", "kept"])
    with pytest.raises(RuntimeError):
        with Run(config, CHIEF) as run:
            open(os.path.join(run.dir, "config.json"), "w").close()
            raise RuntimeError("a failure after the config was written")
    assert sorted(os.listdir(tmp_path / "kept")) == [".lock", "config.json"]  # its name stays taken
    from mnist_vae.rundir import RunLock

    with RunLock(str(tmp_path / "kept")):  # and its lock was released
        pass


def test_a_resumed_run_never_shortens_and_says_when_only_outputs_are_missing(tmp_path, capsys):
    config, _ = resolve(["--out", str(tmp_path), "--run-name", "r", "--epochs", "3"])
    run = Run(config, CHIEF)
    run.dir = str(tmp_path / "r")
    os.makedirs(run.dir)
    from mnist_vae.runfolder import RunFolder

    run.folder, run.resume = RunFolder(run.dir), "python train.py --resume r"
    assert run.nothing_to_do(2) is False  # epochs remain
    assert run.nothing_to_do(3) is False and "writing the outputs it is missing" in capsys.readouterr().out
    with pytest.raises(RunError, match="it never shortens one"):
        run.nothing_to_do(5)


def test_the_weights_fingerprint_changes_with_any_weight():
    weights = [np.zeros((3, 2), np.float32), np.ones(2, np.float32)]
    model = SimpleNamespace(get_weights=lambda: weights)
    first = weights_digest(model)
    assert first == weights_digest(SimpleNamespace(get_weights=lambda: [w.copy() for w in weights]))
    weights[1][0] = np.nextafter(np.float32(1), np.float32(2))  # one bit of one weight
    assert weights_digest(model) != first and len(first) == 16
