"""Run folders: creating a fresh one, and writing files into it safely.

Files are written to a temporary name in the same folder and renamed into place, so a crash
at any moment leaves either the previous complete file or the new complete one.
"""
import csv
import errno
import json
import math
import os
import re
import shutil
import tempfile
import time

from mnist_vae.cli import UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not protected against a second writer there
    fcntl = None


CONFIG_FORMAT = 2  # layout version of config.json; --resume and evaluate.py refuse others (1: TensorFlow only)
FINAL_OUTPUTS = ("model.keras", "eval.json", "report.html")  # beside metrics.json, what a complete run has
LOCK_NAME = ".lock"  # in every run folder: holds the pid of the process that has the folder
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_in_flight = set()  # temporary files being written now (stopping.py removes them when a signal ends the process)


class RunError(UserError):
    """A problem with the output folder or a run folder (message: one line)."""


def make_run_dir(out, run_name=None, label=""):
    """Create <out>/<run_name> (or a new unique name) and return its path; never reuses a folder."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunError(f"--out {out}: is a file, not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise RunError(f"--out {out}: cannot create it ({e.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunError(f"--out {out}: folder is not writable")
    if run_name:
        path = os.path.join(out, run_name)
        try:
            os.mkdir(path)
        except FileExistsError:
            raise RunError(f"--run-name {run_name}: {path} already exists (runs are never overwritten)") from None
        except OSError as e:
            raise RunError(f"--run-name {run_name}: cannot create {path} ({e.strerror})") from None
        return path
    stem = time.strftime("%Y%m%d-%H%M%S") + (f"-{label}" if label else "")
    for i in range(1, 1000):
        path = os.path.join(out, stem if i == 1 else f"{stem}-{i}")
        try:
            os.mkdir(path)  # atomic: two runs started together never share a folder
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise RunError(f"--out {out}: cannot create a run folder there ({e.strerror})") from None
    raise RunError(f"--out {out}: could not find a free run name for {stem}")


def _umask():
    try:  # Linux: read it without changing it (os.umask would, for a moment, for every thread)
        with open("/proc/self/status") as f:
            mask = next((int(line.split()[1], 8) for line in f if line.startswith("Umask:")), None)
    except OSError:
        mask = None
    if mask is None:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode():
    """The permissions the user's umask gives a new file (mkstemp makes 0600 files whatever the umask)."""
    return 0o666 & ~_umask()


def new_folder_mode():
    """The permissions the user's umask gives a new folder."""
    return 0o777 & ~_umask()


def atomic_write(path, write):
    """Call write(tmp_path), then rename tmp_path to path (same folder, so the rename is atomic).

    The file ends with the permissions any new file of the user's gets (0644 under umask 022)."""
    folder = os.path.dirname(os.path.abspath(path))
    # Keep the whole extension (".weights.h5"): Keras' writers insist on it.
    name = os.path.basename(path)
    extension = "." + name.split(".", 1)[1] if "." in name else ""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp" + extension)
    except OSError as e:  # a read-only or vanished folder: name the file the user knows, not a temporary one
        raise OSError(e.errno, e.strerror or str(e), path) from None
    os.close(fd)
    _in_flight.add(tmp)
    try:
        write(tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.filename in (None, tmp):  # the file the user knows (zipfile names none)
            raise OSError(e.errno, e.strerror or str(e), path) from None
        raise
    finally:
        _in_flight.discard(tmp)
    return path


def remove_temporaries_in_flight():
    for tmp in list(_in_flight):
        try:
            os.remove(tmp)
        except OSError:
            pass  # renamed into place meanwhile, or already gone


def write_text(path, text):
    """Write text to path (UTF-8, newlines as given), atomically; returns path."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return atomic_write(path, write)


def strict_json(value):
    """value with every float that JSON cannot hold (NaN, infinities) as None: what the project writes is JSON that
    every reader parses (JavaScript's JSON.parse refuses Python's NaN and Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_json(path, obj):
    """Write obj as strict JSON (strict_json), atomically; returns path."""
    text = json.dumps(strict_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return atomic_write(path, write)


def read_config(run_dir, expected_format):
    """A run folder's config.json, checked: one clear RunError for anything that is not a usable run."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.isdir(run_dir):
        raise RunError(f"{run_dir}: no such run folder")
    if not os.path.isfile(path):
        raise RunError(f"{run_dir}: not a run folder (no config.json)")
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise RunError(f"{path}: unreadable ({e.__class__.__name__}: {e})") from None
    if not isinstance(config, dict) or config.get("format") != expected_format:
        found = config.get("format") if isinstance(config, dict) else None
        raise RunError(f"{path}: written by an unknown version of this program (format {found!r}; "
                       f"this one reads format {expected_format})")
    return config


_LINK = ("{path} is a symbolic link: the files of a run folder are never written through links (the folder was "
         "edited; remove the link and try again)")


def refuse_links(run_dir):
    """A RunError if anything inside the run folder is a symbolic link: each of its files is written in place
    (the lock) or into its sub-folders, and a link there would send those writes to another file."""
    for folder, subfolders, files in os.walk(run_dir):  # walk never descends through a link to a folder
        for name in subfolders + files:
            if os.path.islink(os.path.join(folder, name)):
                raise RunError(_LINK.format(path=os.path.join(folder, name)))


class RunLock:
    """`with RunLock(run_dir):` this process is the only one using the run folder.

    An OS lock (flock) on <run>/.lock, which also holds the owner's pid: the kernel drops it when the
    process ends, however it ends, so a killed run never leaves its folder locked. A second process
    gets one RunError naming the holder and changes nothing."""

    def __init__(self, run_dir):
        self.run_dir, self.fd = run_dir, None

    def __enter__(self):
        if fcntl is None:
            return self
        refuse_links(self.run_dir)
        path = os.path.join(self.run_dir, LOCK_NAME)
        try:  # O_NOFOLLOW: a link planted between the check and here fails too (ELOOP), never followed
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), new_file_mode())
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise RunError(_LINK.format(path=path)) from None
            raise RunError(f"{self.run_dir}: cannot lock the run folder ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunError(f"{self.run_dir} is in use by process {holder} (a train.py or evaluate.py on this run); "
                           f"wait for it to end or stop it, then try again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # releases the lock
            self.fd = None


def write_error(error, saved, remedy):
    """One line for an OSError met while writing a run: what failed and why, what is safe, what to do.
    Free space is suggested only when space was the problem."""
    what = error.filename or "a file of the run"
    if error.errno in NO_SPACE:
        return f"cannot write {what}: {error.strerror or error} ({saved}): free space, then {remedy}"
    if error.errno == errno.ENOENT:
        cause = "no such file or folder: was the run folder moved or deleted meanwhile?"
        if error.filename and not os.path.isdir(os.path.dirname(os.path.abspath(error.filename))):
            return f"cannot write {what}: {cause} (its checkpoint went with it: nothing is left to resume)"
    else:
        cause = error.strerror or str(error)
    return f"cannot write {what}: {cause} ({saved}); {remedy}"


def remove_stale_temporaries(run_dir):
    """Delete temporary files that a killed process left behind (the real files are always complete)."""
    for folder in (run_dir, os.path.join(run_dir, "checkpoint")):
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith(".") and ".tmp" in name:
                    os.remove(os.path.join(folder, name))


def ensure_space(folder, nbytes):
    """Raise ENOSPC before writing nbytes (plus a margin) into folder if they will not fit: a checkpoint's room
    is checked up front, in the training thread, where the error can still be reported in one line and the old
    checkpoint kept, rather than by the background writer part-way through its .npz."""
    needed = int(nbytes * 1.1) + (1 << 20)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device (need about {needed >> 20} MB, "
                                    f"{free >> 20} MB free)", folder)


def remove_if_empty(run_dir):
    """Remove a run folder that holds nothing but its lock (a run that earned nothing)."""
    if os.path.isdir(run_dir) and set(os.listdir(run_dir)) <= {LOCK_NAME}:
        shutil.rmtree(run_dir, ignore_errors=True)


def read_json(run_dir, name):
    """One of a run's JSON files as a dict, or None where it is missing or unreadable."""
    try:
        with open(os.path.join(run_dir, name)) as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_history(run_dir):
    """history.csv as {column: [value per epoch]} (numbers as floats); {} when there is none."""
    try:
        with open(os.path.join(run_dir, "history.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return {}
    try:
        # An empty cell (test_nll_iw between stage ends) reads as NaN: no number, a gap in a curve.
        return {key: [float(row[key]) if row[key] != "" else math.nan for row in rows]
                for key in (rows[0] if rows else {})}
    except (TypeError, ValueError):
        raise RunError(f"{run_dir}/history.csv: not numbers") from None


# The only file names a checkpoint's state.json may give: plain names of files of its own checkpoint folder.
WEIGHTS_NAME = re.compile(r"epoch-(\d{4,})\.variables\.npz")
BEST_WEIGHTS_NAME = re.compile(r"best-epoch-(\d{4,})\.variables\.npz")


def _checked_state(state, run_dir):
    """state.json's dict if every value in it is one the checkpoint itself writes, else ValueError naming the
    first that is not: the epochs 1..epoch in order, its file names plain names of this checkpoint's own files
    (no separator, no "..", no link) for the last epoch and an epoch at or before it."""
    epoch, history = state["epoch"], state["history"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise ValueError(f"epoch = {epoch!r}")
    if not isinstance(history, list) or len(history) != epoch or any(
            not isinstance(row, dict) or row.get("epoch") != i + 1 for i, row in enumerate(history)):
        raise ValueError(f"its history is not the epochs 1 to {epoch} in order")
    if any(not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
           for row in history for value in row.values() if value is not None):
        raise ValueError("its history holds a value that is not a finite number")
    if not 0.0 <= float(state.get("training_seconds", 0.0)) < float("inf"):  # NaN fails too
        raise ValueError("training_seconds")
    for key, pattern, last_only in (("weights", WEIGHTS_NAME, True), ("best_weights", BEST_WEIGHTS_NAME, False)):
        name = state.get(key)
        if name is None and key == "best_weights":
            continue
        found = pattern.fullmatch(name) if isinstance(name, str) else None
        if not found or not (int(found[1]) == epoch if last_only else 1 <= int(found[1]) <= epoch):
            raise ValueError(f"{key} = {json.dumps(name)[:80]} is not a file of its own checkpoint")
        if os.path.islink(os.path.join(run_dir, "checkpoint", name)):
            raise ValueError(f"{key} = {name} is a symbolic link")
    return state


def read_state(run_dir):
    """The last committed checkpoint's state, or None if no epoch has completed. An edited state.json (a file name
    outside its checkpoint folder, history rows that are not its epochs) is one RunError, never obeyed."""
    path = os.path.join(run_dir, "checkpoint", "state.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            state = json.load(f)
        _checked_state(state, run_dir)
    except (OSError, KeyError, TypeError) as e:
        raise RunError(f"{path}: unreadable checkpoint state ({e.__class__.__name__})") from None
    except ValueError as e:
        raise RunError(f"{path}: unreadable checkpoint state ({e}; the file was edited or damaged)") from None
    for key in ("weights", "best_weights"):
        if state.get(key) and not os.path.isfile(os.path.join(run_dir, "checkpoint", state[key])):
            raise RunError(f"{path}: names {state[key]}, which is missing")
    return state


def best_epoch(state):
    """The epoch whose weights state.json keeps as the best (early stopping's choice), or None."""
    name = (state or {}).get("best_weights")
    return int(BEST_WEIGHTS_NAME.fullmatch(name)[1]) if name else None
