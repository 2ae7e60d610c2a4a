"""Disks that refuse: an unwritable output folder, a disk that fills during training or during the final
save. Each is one line naming the file and what to do, and nothing completed is lost."""
import errno
import json
import os
import shutil
import subprocess

import pytest
from conftest import (
    checkpoint_arrays,
    mount,
    run_main,
    run_program,
)

# Checkpoints of about 1.2 MB (784-64-2 with Adam's state), which the small disks below are sized for.
TINY = ["--hidden", "64", "--batch-size", "64", "--iw-samples", "5"]


def run_train(*args, timeout=300):
    return run_program("train.py", *args, timeout=timeout)


pytestmark = pytest.mark.backend_independent  # files and messages: CI runs them on TensorFlow


@pytest.mark.slow
@pytest.mark.multiprocess
def test_unwritable_output_folder_is_refused_before_anything_else(tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() == 0:  # root ignores permission bits: use a read-only bind mount instead
        if not mount("--bind", "-o", "ro", str(target), str(target)):
            pytest.skip("running as root and cannot mount a read-only folder here")
    else:
        os.chmod(target, 0o500)
    try:
        result = run_main("train", "--out", str(target), "--data", str(tmp_path / "absent"))
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [f"error: --out {target}: folder is not writable"]
        assert result.stdout == ""  # refused at once: no data loaded (that line comes first), nothing started
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(target)])
        else:
            os.chmod(target, 0o700)


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to mount a small tmpfs")
def test_full_disk_gives_a_clear_message_and_keeps_the_previous_checkpoint(tmp_path, small_npz):
    disk = tmp_path / "disk"
    disk.mkdir()
    # One checkpoint of this model is ~1.2 MB: the first fits, the second (written beside it, then swapped) does not.
    if not mount("-t", "tmpfs", "-o", "size=3000k", "tmpfs", str(disk)):
        pytest.skip("cannot mount a tmpfs here")
    try:
        result = run_train("--data", small_npz, "--epochs", "3", *TINY, "--out", str(disk), "--run-name", "full")
        assert result.returncode == 1, result.stdout[-1000:]
        assert "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: cannot write") and "checkpoint of epoch 1 is intact" in last, last
        state = json.load(open(disk / "full" / "checkpoint" / "state.json"))
        assert state["epoch"] == 1 and len(checkpoint_arrays(str(disk / "full"))) > 10  # loads whole
        assert not [n for n in os.listdir(disk / "full" / "checkpoint") if ".tmp" in n]
    finally:
        subprocess.run(["umount", str(disk)])


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to mount a small tmpfs")
def test_a_full_disk_during_the_final_save_names_the_file_and_the_way_on(tmp_path, finished_run):
    trained = tmp_path / "trained"  # all epochs trained, final outputs not yet written
    shutil.copytree(finished_run, trained)
    for name in os.listdir(trained):
        if name not in ("config.json", "history.csv", "checkpoint", ".lock"):
            os.remove(trained / name)
    used = sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(trained) for n in names)
    disk = tmp_path / "disk"
    disk.mkdir()
    if not mount("-t", "tmpfs", "-o", f"size={used // 1024 + 64}k", "tmpfs", str(disk)):
        pytest.skip("cannot mount a tmpfs here")
    try:
        run = str(disk / "run")
        shutil.copytree(trained, run)
        result = run_main("train", "--resume", run)
        assert result.returncode == 1, result.stdout
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"error: cannot write {run}/") and "No space left on device" in line
        assert line.endswith(f"(all 2 epochs are checkpointed): free space, then python train.py "
                             f"--resume {run} completes the run")
        assert not [n for n in os.listdir(run) if ".tmp" in n]
    finally:
        subprocess.run(["umount", str(disk)])


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to mount a read-only folder")
def test_a_read_only_folder_is_reported_under_the_files_own_name(tmp_path):
    from mnist_vae.rundir import atomic_write, write_error

    folder = tmp_path / "ro"
    folder.mkdir()
    if not mount("--bind", "-o", "ro", str(folder), str(folder)):
        pytest.skip("cannot mount a read-only folder here")
    try:
        path = str(folder / "metrics.json")
        with pytest.raises(OSError) as caught:
            atomic_write(path, lambda tmp: open(tmp, "w").write("{}"))
        assert caught.value.filename == path  # not the temporary name it was about to write
        assert write_error(caught.value, "all is kept", "resume").startswith(f"cannot write {path}: Read-only")
    finally:
        subprocess.run(["umount", str(folder)])


def test_write_errors_suggest_free_space_only_when_space_ran_out(tmp_path):
    from mnist_vae.rundir import write_error

    path = str(tmp_path / "model.keras")  # in a folder that exists
    for code in (errno.ENOSPC, errno.EDQUOT):
        message = write_error(OSError(code, os.strerror(code), path), "all is kept", "resume")
        assert message.startswith(f"cannot write {path}:") and "free space, then resume" in message
    for code in (errno.ENOENT, errno.EACCES, errno.EROFS, errno.EIO):
        message = write_error(OSError(code, os.strerror(code), path), "all is kept", "resume")
        assert "free space" not in message and message.endswith("(all is kept); resume")
    # A run folder removed meanwhile took its checkpoint along: nothing is claimed to be kept.
    gone = str(tmp_path / "gone" / "model.keras")
    message = write_error(OSError(errno.ENOENT, os.strerror(errno.ENOENT), gone), "all is kept", "resume")
    assert "all is kept" not in message and "nothing is left to resume" in message
