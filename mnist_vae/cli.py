"""Command-line plumbing shared by the scripts: range-checked argparse types, one-line errors for the user
and a quiet console while native libraries start.

Imports nothing heavy: everything here runs before Keras or any backend is loaded.
"""
import argparse
import contextlib
import os
import re
import struct
import sys
import tempfile


class UserError(Exception):
    """Something the user can fix (message: one line); data.DataError and rundir.RunError are kinds of it."""


class UsageError(UserError):
    """Flags that do not go together: exit code 2, as argparse gives a flag of its own that is wrong."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each flag's default, where it says something: not "(default: None)" after a flag whose help
    says what happens without it, nor "(default: False)" after a switch, nor a second default after the one
    its help gives."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or any(
                said in (action.help or "") for said in ("(default", "default:")):
            return action.help
        return super()._get_help_string(action)


FLOAT32_TINY = 1.4e-45  # the smallest positive float32 (a subnormal): anything smaller rounds to 0


def as_float32(value):
    """value rounded to float32, as the model will hold it."""
    return struct.unpack("f", struct.pack("f", value))[0]


def number_in_range(kind, low, low_ok=True, high=None):
    """An argparse type: kind(text) within [low, high) (low itself excluded unless low_ok)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a{'n integer' if kind is int else ' number'}, got {text!r}")
        if not (value >= low) or (value == low and not low_ok) or (high is not None and not value < high) \
                or value == float("inf"):
            bound = f">= {low}" if low_ok else f"> {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}{f' and < {high}' if high else ''}, got {text}")
        if kind is float and (value != 0 and abs(value) < FLOAT32_TINY or value == 0 and re.search(
                r"[1-9]", re.split("[eE]", text)[0])):
            raise argparse.ArgumentTypeError(f"{text} is too small to be told from 0 in float32, the precision the "
                                             "model computes in: give 0 or a larger number")
        return value
    return parse


def hidden_widths(hidden):
    """--hidden's widths as a tuple: 512, "200,200", (200, 200) or [200, 200] -> (512,) or (200, 200)."""
    parts = hidden if isinstance(hidden, (list, tuple)) else str(hidden).split(",")
    return tuple(int(part) for part in parts)


def hidden_text(widths):
    """--hidden as its flag and config.json write it: (512,) -> 512, (200, 200) -> "200,200"."""
    return widths[0] if len(widths) == 1 else ",".join(str(width) for width in widths)


def hidden_layers(text):
    """An argparse type: hidden-layer widths, "512" -> 512 or "200,200" -> "200,200" (several widths stay text,
    so config.json keeps them as given and the flag reads them back)."""
    widths = [part.strip() for part in str(text).split(",")]
    if not all(part.isdigit() and int(part) >= 1 for part in widths):
        raise argparse.ArgumentTypeError(f"expected widths >= 1 separated by commas (512 or 200,200), got {text!r}")
    return int(widths[0]) if len(widths) == 1 else ",".join(str(int(part)) for part in widths)


def path_text(text):
    """An argparse type: a path that can be written as UTF-8 (a run's pages, card and console name its folders and
    data); a name that is not, which the operating system hands Python as lone surrogates, is refused here
    rather than after training, where writing the pages would fail."""
    try:
        str(text).encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"{ascii(text)} is not valid UTF-8, which the run's pages and files must "
                                         "name: rename it") from None
    return text


def folder_name(text):
    """An argparse type: a plain folder name (no path), so a run folder always lands inside --out."""
    path_text(text)
    if not text or text in (".", "..") or "/" in text or os.sep in text or (os.altsep and os.altsep in text):
        raise argparse.ArgumentTypeError(f"must be a folder name without '/' (it goes inside --out), got {text!r}")
    return text


def exit_on_user_error(run, *args):
    """run(*args), with problems the user can fix (bad data, a bad run folder, a full or read-only disk,
    a missing backend) reported as one line on stderr and exit code 1 instead of a traceback."""
    try:
        return run(*args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except UserError as e:  # data.DataError and rundir.RunError among them
        print(f"error: {e}", file=sys.stderr)
    except OSError as e:
        print(f"error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
    return 1


# What native libraries print while they start, whatever TF_CPP_MIN_LOG_LEVEL says: absl's notice, its
# info and warning lines, the two errors a GPU build prints on a machine without a GPU (the failed cuInit
# probe, the duplicate CUDA library factories) and oneDNN's note that a CPU without AVX-512 runs float16 on
# Eigen (tf_engine.probe_half_precision makes it come at start-up). Any other error line, a real CUDA problem on a
# GPU machine included, reaches the user.
START_UP_CHATTER = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called are written "
                              r"to STDERR"
                              r"|[IW]\d{4} \d\d:\d\d:\S+ +\d+ \S+:\d+\] .*"
                              r"|E\d{4} \d\d:\d\d:\S+ +\d+ \S+:\d+\] .*(failed call to cuInit"
                              r"|Unable to register cu(DNN|FFT|BLAS) factory"
                              r"|oneDNN supports DT_HALF only on platforms with AVX-512).*")


@contextlib.contextmanager
def quiet_start_up():
    """Hold back the native start-up lines written to stderr inside the block (importing Keras and its
    backend, finding devices); every other line written meanwhile is passed on when the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                    if not START_UP_CHATTER.fullmatch(line.rstrip("\n"))]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
