"""mnist_vae/rundir.py: run folders are created once with unique names, files are written atomically and get
the permissions of the user's umask."""
import json
import os
import stat

import pytest
from conftest import TINY, run_main

from mnist_vae.rundir import RunError, atomic_write, make_run_dir, write_json

pytestmark = pytest.mark.backend_independent


@pytest.mark.slow
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_run_files_get_the_permissions_of_the_users_umask(tmp_path, small_npz, umask):
    previous = os.umask(umask)
    try:
        result = run_main("train", "--data", small_npz, "--epochs", "1", *TINY, "--out", tmp_path, "--run-name", "r")
    finally:
        os.umask(previous)
    assert result.returncode == 0, result.stderr
    files = [os.path.join(d, n) for d, _, names in os.walk(tmp_path / "r") for n in names]
    assert len(files) > 12
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask, path


def test_default_run_names_are_unique(tmp_path):
    made = {make_run_dir(str(tmp_path), label="dense-z2") for _ in range(5)}
    assert len(made) == 5 and all(os.path.isdir(p) for p in made)


def test_named_run_is_created_once(tmp_path):
    assert make_run_dir(str(tmp_path), "a") == str(tmp_path / "a")
    with pytest.raises(RunError, match="already exists"):
        make_run_dir(str(tmp_path), "a")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = str(tmp_path / "metrics.json")
    write_json(path, {"loss": 1.0})

    def broken(tmp):
        with open(tmp, "w") as f:
            f.write('{"loss": ')  # half a file...
        raise OSError(28, "No space left on device")  # ...then the disk fills up

    with pytest.raises(OSError):
        atomic_write(path, broken)
    assert json.load(open(path)) == {"loss": 1.0}
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary file left behind
