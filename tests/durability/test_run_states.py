"""Every state a run folder can be in, and what --resume and evaluate.py make of it; one process per run
folder; messages that name the true cause; files with the user's permissions; a quiet console."""
import json
import os
import shlex
import shutil
import signal

import pytest
from conftest import gif_frames, run_main, start_program, wait_for_epoch, write_npz

pytestmark = pytest.mark.backend_independent  # files, locks and messages: CI runs them on TensorFlow
OUTPUTS = ("model.keras", "metrics.json", "eval.json", "loss.png", "samples.png", "progress.gif")


def make_state(finished_run, folder, state):
    """A copy of a finished 2-epoch run in `state`, as a kill or Ctrl-C at that point leaves it."""
    shutil.copytree(finished_run, folder)
    config_path = os.path.join(folder, "config.json")
    config = json.load(open(config_path))
    if state == "complete":
        return
    for name in os.listdir(folder):  # killed before the final outputs: only config, history, checkpoint
        if name not in ("config.json", "history.csv", "checkpoint", ".lock"):
            os.remove(os.path.join(folder, name))
    if state == "no epoch":  # killed before the first epoch's checkpoint
        shutil.rmtree(os.path.join(folder, "checkpoint"))
        os.remove(os.path.join(folder, "history.csv"))
    if state in ("some epochs", "partial after ctrl-c"):  # planned for 3 epochs, stopped after 2
        config["epochs"] = 3
        json.dump(config, open(config_path, "w"))
    if state == "partial after ctrl-c":  # what a stopped run writes: partial metrics and the figures
        json.dump({"partial": True, "epochs": 2}, open(os.path.join(folder, "metrics.json"), "w"))
        shutil.copy(os.path.join(finished_run, "loss.png"), folder)


def snapshot(folder):
    """Every file's modification time, but the lock's (each process that takes it writes its pid there)."""
    return {os.path.join(dirpath, name): os.stat(os.path.join(dirpath, name)).st_mtime_ns
            for dirpath, _, names in os.walk(folder) for name in names if name != ".lock"}


STATES = {  # state: (evaluate.py's answer, --resume's effect, epochs after --resume)
    "no epoch": ("no epoch has completed yet, so there is no model.keras; python train.py --resume {run} trains it",
                 "trains", 2),
    "some epochs": ("stopped after epoch 2 of 3, before model.keras was written; python train.py --resume {run} "
                    "trains the rest and writes it", "resuming", 3),
    "partial after ctrl-c": ("stopped after epoch 2 of 3, before model.keras was written; python train.py "
                             "--resume {run} trains the rest and writes it", "resuming", 3),
    "all epochs, no outputs": ("all 2 epochs are trained but the final outputs were not written; python train.py "
                               "--resume {run} writes them", "writing the outputs it is missing", 2),
    "complete": (None, "is complete (2 epochs", 2),
}


@pytest.mark.slow
@pytest.mark.parametrize("state", STATES)
def test_resume_and_evaluate_agree_in_every_state_of_a_run_folder(tmp_path, finished_run, state):
    run = str(tmp_path / "a run")  # a space: every hint must be pasteable into a shell
    make_state(finished_run, run, state)
    hint, effect, epochs = STATES[state]
    evaluated = run_main("evaluate", run, "--iw-samples", "3")
    if hint is None:
        assert evaluated.returncode == 0, evaluated.stderr
    else:
        assert evaluated.returncode == 1 and evaluated.stderr == f"error: {run}: {hint.format(run=shlex.quote(run))}\n"
    before = snapshot(run)
    resumed = run_main("train", "--resume", run)
    assert resumed.returncode == 0, resumed.stderr
    if effect != "trains":
        assert effect in resumed.stdout
    if state == "complete":  # says so, changes nothing
        assert snapshot(run) == before
    for name in OUTPUTS:
        assert os.path.getsize(os.path.join(run, name)) > 0, name
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert metrics["partial"] is False and metrics["epochs"] == epochs
    assert json.load(open(os.path.join(run, "eval.json")))["epoch"] == epochs
    # The frames of earlier sessions are checkpointed: the GIF has one frame per epoch, whatever the state.
    assert gif_frames(os.path.join(run, "progress.gif")) == epochs
    again = run_main("train", "--resume", run)
    assert again.returncode == 0 and f"is complete ({epochs} epochs" in again.stdout
    assert run_main("evaluate", run, "--iw-samples", "3").returncode == 0


# ---------------------------------------------------------------- one writer per run folder

@pytest.fixture(scope="module")
def longer_npz(tmp_path_factory, digits):
    """Enough digits that a run is still training when a second process comes."""
    return write_npz(tmp_path_factory.mktemp("data"), "longer.npz", digits, 3000, 200)


def start_training(run, epochs, data):
    """train.py on `data` into the run folder `run`, in the background, once its first epoch is checkpointed."""
    proc = start_program("train.py", "--data", data, "--epochs", epochs, "--hidden", "256", "--iw-samples", "5",
                         "--out", os.path.dirname(run), "--run-name", os.path.basename(run))
    try:
        wait_for_epoch(run, 1, proc)
    except BaseException:
        proc.kill()
        raise
    return proc


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_second_process_on_a_run_folder_is_refused_and_the_first_finishes(tmp_path, longer_npz):
    run = str(tmp_path / "busy")
    first = start_training(run, 12, longer_npz)
    try:
        config_before = open(os.path.join(run, "config.json")).read()
        for program, args in (("train", ["--resume", run, "--epochs", "20"]), ("evaluate", [run])):
            refused = run_main(program, *args)
            assert refused.returncode == 1
            assert refused.stderr == (f"error: {run} is in use by process {first.pid} (a train.py or evaluate.py "
                                      "on this run); wait for it to end or stop it, then try again\n")
        assert open(os.path.join(run, "config.json")).read() == config_before
        stdout, stderr = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, stderr[-2000:]
    assert json.load(open(os.path.join(run, "metrics.json")))["epochs"] == 12
    assert run_main("evaluate", run, "--iw-samples", "3").returncode == 0  # the lock went with its process


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_killed_process_never_leaves_its_run_folder_locked(tmp_path, longer_npz):
    run = str(tmp_path / "killed")
    first = start_training(run, 30, longer_npz)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert open(os.path.join(run, ".lock")).read().strip() == str(first.pid)  # its pid stays; its lock does not
    resumed = run_main("train", "--resume", run, "--epochs", "3")
    assert resumed.returncode == 0, resumed.stderr
    assert json.load(open(os.path.join(run, "metrics.json")))["epochs"] == 3


# ---------------------------------------------------------------- true causes

@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_run_folder_removed_during_training_is_not_reported_as_a_full_disk(tmp_path, longer_npz):
    run = str(tmp_path / "removed")
    proc = start_training(run, 50, longer_npz)
    try:
        shutil.rmtree(run)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr[-2000:]
    (line,) = stderr.strip().splitlines()
    assert "was the run folder moved or deleted meanwhile?" in line and "free space" not in line
    assert "nothing is left to resume" in line and "intact" not in line  # its checkpoint went with it


# ---------------------------------------------------------------- permissions and a quiet console


@pytest.mark.slow
def test_no_file_of_a_run_folder_is_written_through_a_symbolic_link(tmp_path, finished_run):
    """A link planted in a run folder (the lock, the checkpoint folder) would send a write to another user's
    file: every program refuses the folder in one line and the link's target is left as it was."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    for planted in (".lock", "checkpoint", "loss.png"):
        run = tmp_path / f"run-{planted.strip('.')}"
        shutil.copytree(finished_run, run)
        target = run / planted
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        os.symlink(victim, target)
        for program, args in (("evaluate", [run, "--iw-samples", "2"]), ("train", ["--resume", run]),
                              ("train", ["--resume", run, "--epochs", "3"])):
            result = run_main(program, *args)
            assert result.returncode == 1 and result.stderr.splitlines() == [
                f"error: {target} is a symbolic link: the files of a run folder are never written through links "
                "(the folder was edited; remove the link and try again)"], (planted, program, result.stderr)
        assert victim.read_text() == "precious\n" and os.path.islink(target)




@pytest.mark.slow
def test_a_checkpoint_that_names_files_outside_its_own_folder_is_refused_in_one_line(tmp_path, finished_run):
    """state.json's file names are never followed out of the run's checkpoint folder (another run's weights would
    be resumed, or saved and evaluated as this run's model); nor are history rows that are not its epochs."""
    other = str(tmp_path / "base1")
    make_state(finished_run, other, "all epochs, no outputs")
    copied = str(tmp_path / "copy")
    make_state(finished_run, copied, "some epochs")
    state_path = os.path.join(copied, "checkpoint", "state.json")
    state = json.load(open(state_path))
    edits = {  # field: the hostile value, and what the one line says
        "weights": ("../../base1/checkpoint/epoch-0002.variables.npz", "weights = "),
        "best_weights": ("../../base1/checkpoint/epoch-0002.variables.npz", "best_weights = "),
        "best_weights ": ("best-epoch-x1y.variables.npz", "best_weights = "),
        "history": ([{**row, "epoch": 99 if row["epoch"] == 2 else row["epoch"]} for row in state["history"]],
                    "its history is not the epochs 1 to 2 in order"),
        "history ": ([{**row, "loss": "<script>"} for row in state["history"]], "not a finite number"),
        "epoch": (3, "its history is not the epochs 1 to 3"),
    }
    for field, (value, said) in {**edits, "linked": (None, "symbolic link")}.items():
        edited = dict(state)
        if field == "linked":  # a plain name, but a link to another run's file
            os.symlink(os.path.join(other, "checkpoint", "epoch-0002.variables.npz"),
                       os.path.join(copied, "checkpoint", "epoch-0001.variables.npz"))
            edited.update(epoch=1, weights="epoch-0001.variables.npz", history=state["history"][:1])
        else:
            edited[field.strip()] = value
        json.dump(edited, open(state_path, "w"))
        before = snapshot(copied)
        for program in ("train", "evaluate"):
            result = run_main(program, *(["--resume"] if program == "train" else []), copied)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 1 and len(lines) == 1, (field, program, result.stderr[-1500:])
            assert lines[0].startswith("error: ") and said in lines[0], (field, lines)
            assert field == "linked" or lines[0].startswith(f"error: {state_path}: "), lines
        assert snapshot(copied) == before  # nothing written, nothing trained
