"""Loading MNIST-style images and labels and checking them (pipeline.py makes the batches).

Sources: Keras' standard download (hash-checked, cached in ~/.keras/datasets), a Keras-layout
`.npz`, or a folder of the original IDX files (plain or gzipped). Every problem with a file
becomes a DataError whose message is one line naming the file and what is wrong with it.
"""
import gzip
import math
import os
import zlib
from dataclasses import dataclass

import numpy as np

from mnist_vae.cli import UserError, quiet_start_up

IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
IDX_UINT8 = 0x08
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
BINARIZE_MODES = ("none", "static", "dynamic")
VAL_SPLIT = 0.2  # the share of a single split held out as the test set (--val-split's default)
VALIDATION_STREAM = 400  # mixed with the run's seed to choose the validation slice, apart from other draws
TEST_BINARIZE_SEED = 20150901  # fixed: every run and every evaluation sees the same binarized test set


class DataError(UserError):
    """A data source is missing, unreadable or not what it should be (message: one line)."""


@dataclass
class Splits:
    x_train: np.ndarray  # uint8 (N, 28, 28, 1)
    y_train: np.ndarray  # uint8 (N,), or None for data without labels
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    note: str = ""  # e.g. how the test set was carved out
    x_valid: np.ndarray = None  # a validation slice held out of the training images (--validation), or None
    y_valid: np.ndarray = None
    unbinarized: "Splits" = None  # the same splits before binarization (None: these are): the grey pixels

    @property
    def grey(self):
        """The splits with their grey pixels, binarized or not: what the reference classifier learns and scores."""
        return self.unbinarized or self


# ---------------------------------------------------------------- IDX files

def memory_bytes():
    """This machine's physical memory in bytes."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def _parse_header(head, name):
    """(shape, header length) from an IDX header; a DataError for anything that is not a uint8 IDX file
    of non-empty images or labels, or that declares more data than this machine's memory."""
    if len(head) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(head)} bytes)")
    zero, dtype_code, ndim = int.from_bytes(head[:2], "big"), head[2], head[3]
    if zero != 0 or dtype_code != IDX_UINT8 or ndim == 0:
        raise DataError(
            f"{name}: bad magic number 0x{int.from_bytes(head[:4], 'big'):08x} "
            "(expected 0x00000803 for images or 0x00000801 for labels)"
        )
    header = 4 + 4 * ndim
    if len(head) < header:
        raise DataError(f"{name}: truncated header ({len(head)} bytes, need {header})")
    shape = tuple(int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if 0 in shape:
        raise DataError(f"{name}: its header declares an empty array {shape}")
    if math.prod(shape) > memory_bytes() // 2:
        raise DataError(f"{name}: its header declares {shape} ({math.prod(shape) / 1e9:.1f} GB), more than "
                        f"this machine's memory can hold")
    return shape, header


def _read_bytes(path):
    """An IDX file's bytes (gunzipped), read no further than its header declares (plus one byte, to
    detect trailing data): a small .gz that inflates to gigabytes is refused without inflating it."""
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            head = f.read(4)
            if len(head) == 4:
                head += f.read(4 * head[3])
            shape, header = _parse_header(head, path)
            return head + f.read(math.prod(shape) + 1)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e.__class__.__name__}: {e})") from None


def parse_idx(raw, name="<bytes>"):
    """Decode IDX bytes (big-endian header, then uint8 data in C order) into an array."""
    shape, header = _parse_header(raw[:4 + 4 * raw[3]] if len(raw) >= 4 else raw, name)
    expected = header + math.prod(shape)
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "has trailing bytes"
        size = f"file has {len(raw)}" if len(raw) <= expected else "file has more"
        raise DataError(f"{name}: {problem}: header says {shape} ({expected} bytes), {size}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path, array):
    """Write a uint8 array as an IDX file (gzipped when path ends in .gz). Used by tests and tools."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, IDX_UINT8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw += array.tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if path.endswith(".gz") else raw)


def _find_idx(folder, stem):
    for name in (stem, stem + ".gz"):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def load_idx_folder(folder):
    """{split: (images, labels, note)} for every split whose images are in the folder (labels None where
    its labels file is absent: images alone train the plain VAE)."""
    found = {}
    for split in ("train", "test"):
        images_path = _find_idx(folder, IDX_FILES[split, "images"])
        labels_path = _find_idx(folder, IDX_FILES[split, "labels"])
        if images_path is None and labels_path is None:
            continue
        if images_path is None:
            raise DataError(f"{folder}: has the {split} labels but not {IDX_FILES[split, 'images']}[.gz]")
        images = parse_idx(_read_bytes(images_path), images_path)
        labels = None if labels_path is None else parse_idx(_read_bytes(labels_path), labels_path)
        found[split] = check_arrays(images, labels, images_path, labels_path or IDX_FILES[split, "labels"])
    if not found:
        raise DataError(f"{folder}: no MNIST IDX files found (expected {IDX_FILES['train', 'images']}[.gz] "
                        f"and/or {IDX_FILES['test', 'images']}[.gz] with their labels)")
    return found


# ---------------------------------------------------------------- npz and download

def load_npz(path):
    """{split: (images, labels)} from a Keras-layout .npz (x_train, y_train, x_test, y_test)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable .npz file ({e.__class__.__name__}: {e})") from None
    except Exception as e:  # zipfile.BadZipFile and friends: the file is not what its name says
        raise DataError(f"{path}: not a readable .npz file ({e.__class__.__name__}: {e})") from None
    found = {}
    for split in ("train", "test"):
        xk, yk = f"x_{split}", f"y_{split}"
        if xk in arrays or yk in arrays:
            if xk not in arrays:
                raise DataError(f"{path}: has {yk} but not {xk}")
            found[split] = check_arrays(arrays[xk], arrays.get(yk), f"{path}[{xk}]", f"{path}[{yk}]")
    if not found:
        raise DataError(f"{path}: none of the keys {', '.join(NPZ_KEYS)} (has: {', '.join(arrays) or 'nothing'})")
    return found


def download(dataset="mnist"):
    """Keras' standard download (cached, verified against its known hash)."""
    with quiet_start_up():  # Keras starts TensorFlow, whose native start-up lines are chatter
        import keras

    loader = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist}[dataset]
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise DataError(f"could not download {dataset} ({reason}); without internet, pass --data PATH "
                        "(a folder of the IDX files or a Keras-layout .npz)") from None
    return {
        "train": check_arrays(x_train, y_train, f"{dataset} x_train", f"{dataset} y_train"),
        "test": check_arrays(x_test, y_test, f"{dataset} x_test", f"{dataset} y_test"),
    }


# ---------------------------------------------------------------- checks and splits

def check_arrays(images, labels, images_name, labels_name):
    """Validate one split; returns (uint8 images (N, 28, 28, 1), uint8 labels (N,) or None, a note or "").
    Black-and-white images stored as booleans or 0/1 are scaled to 0/255, and the note says so; images
    without labels (labels None) are allowed, and the note says what that changes."""
    images = np.asarray(images)
    unlabelled = labels is None
    labels = np.zeros(len(images), np.uint8) if unlabelled else np.asarray(labels)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{images_name}: expected images shaped (N, 28, 28), got {images.shape}")
    if images.shape[0] == 0:
        raise DataError(f"{images_name}: no images")
    if labels.ndim != 1:
        raise DataError(f"{labels_name}: expected labels shaped (N,), got {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{labels_name}: {labels.shape[0]} labels for {images.shape[0]} images in {images_name}")
    for arr, name, top in ((images, images_name, 255), (labels, labels_name, 9)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise DataError(f"{name}: expected integer values (uint8), got dtype {arr.dtype}")
        if arr.min() < 0 or arr.max() > top:
            raise DataError(f"{name}: values must lie in 0..{top}, found {arr.min()}..{arr.max()}")
    notes = []
    if images.dtype == np.bool_ or images.max() <= 1:
        notes.append(f"{images_name}: pixels are only 0 and 1: read as black and white (0 and 255)")
        images = images.astype(np.uint8) * 255
    if unlabelled:
        notes.append(f"{labels_name}: absent: no labels (plots are not coloured by digit; --conditional needs them)")
    return images.astype(np.uint8)[..., None], None if unlabelled else labels.astype(np.uint8), "; ".join(notes)


def load(data=None, dataset="mnist", val_split=VAL_SPLIT, limit=None):
    """Train and test splits from --data (file or folder) or the standard download."""
    if data is None:
        found, source = download(dataset), f"keras.datasets.{dataset}"
    elif os.path.isdir(data):
        found, source = load_idx_folder(data), os.path.abspath(data)
    elif os.path.isfile(data):
        found, source = load_npz(data), os.path.abspath(data)
    else:
        raise DataError(f"{data}: no such file or folder (--data takes a folder of IDX files or a .npz)")

    notes = [note for _, _, note in found.values() if note]
    if "train" in found and "test" in found:
        (x_train, y_train, _), (x_test, y_test, _) = found["train"], found["test"]
    else:
        (only,) = found
        x, y, _ = found[only]
        n_test = int(round(len(x) * val_split))
        if not 0 < n_test < len(x):
            raise DataError(f"{source}: only a {only} split with {len(x)} images; --val-split {val_split} "
                            "leaves no training or no test images")
        x_train, y_train = x[:-n_test], _rows(y, slice(None, -n_test))
        x_test, y_test = x[-n_test:], _rows(y, slice(-n_test, None))
        notes.append(f"only the {only} split was found: training on its first {len(x_train)} images, "
                     f"testing on the last {n_test} (--val-split {val_split})")
    if limit:
        x_train, y_train = x_train[:limit], _rows(y_train, slice(limit))
        x_test, y_test = x_test[:max(1, limit // 4)], _rows(y_test, slice(max(1, limit // 4)))
        notes.append(f"--limit {limit}: using the first {len(x_train)} of those training and {len(x_test)} "
                     "test images")
    if (y_train is None) != (y_test is None):  # labels for one split only: use none
        y_train = y_test = None
        notes.append("labels for only one split: training without labels")
    return Splits(x_train, y_train, x_test, y_test, source, "; ".join(notes))


def _rows(labels, rows):
    return None if labels is None else labels[rows]


def bernoulli_pixels(grey, uniform):
    """Pixels drawn as Bernoulli(grey): 255 where a uniform draw falls below the grey level (in [0, 1]), else 0."""
    return np.where(uniform < grey, 255, 0).astype(np.uint8)


def binarized(images, seed):
    """Each pixel drawn once as Bernoulli(grey / 255): uint8 images of 0s and 255s."""
    rng = np.random.default_rng(seed)
    return bernoulli_pixels(images / 255.0, rng.random(images.shape))


def hold_out_validation(splits, images, seed):
    """Splits with `images` training images, chosen by the seed, moved into a validation slice (x_valid): the
    IWAE recipe's 400 of the 60,000. The rest keep their order; the test set is untouched."""
    if not images:
        return splits
    if images >= len(splits.x_train):
        raise DataError(f"{splits.source}: --validation {images} leaves none of its {len(splits.x_train)} "
                        "training images to train on")
    chosen = np.zeros(len(splits.x_train), bool)
    chosen[np.random.default_rng([seed, VALIDATION_STREAM]).permutation(len(chosen))[:images]] = True
    note = "; ".join(filter(None, [splits.note, f"--validation {images}: {images} training images (chosen by the "
                                                f"seed) held out for validation, {len(chosen) - images} left"]))
    return Splits(splits.x_train[~chosen], _rows(splits.y_train, ~chosen), splits.x_test, splits.y_test,
                  splits.source, note, splits.x_train[chosen], _rows(splits.y_train, chosen))


def apply_binarization(splits, mode, seed):
    """Splits as training sees them: 'static' binarizes the training images once with the run's seed,
    'dynamic' leaves them grey (the pipeline draws them anew per batch); the test images are binarized
    once with a fixed seed in both modes, so evaluations repeat exactly."""
    if mode not in BINARIZE_MODES:
        raise DataError(f"unknown binarization {mode!r} (choose from {', '.join(BINARIZE_MODES)})")
    if mode == "none":
        return splits
    x_train = binarized(splits.x_train, seed) if mode == "static" else splits.x_train
    x_valid = None if splits.x_valid is None else binarized(splits.x_valid, TEST_BINARIZE_SEED + 1)
    return Splits(x_train, splits.y_train, binarized(splits.x_test, TEST_BINARIZE_SEED), splits.y_test,
                  splits.source, splits.note, x_valid, splits.y_valid, unbinarized=splits)


def load_for_run(data, dataset, val_split, limit, binarize, seed, validation=0):
    """A run's images as its training sees them: loaded (load), its validation slice held out
    (hold_out_validation) and binarized (apply_binarization). The one place train.py and evaluate.py get a
    run's data from, so both always see the same training, validation and test images."""
    return apply_binarization(hold_out_validation(load(data, dataset, val_split, limit), validation, seed),
                              binarize, seed)


def is_black_and_white(images):
    """Whether every pixel of these uint8 images is 0 or 255 (binarized data, stored either way)."""
    return bool(np.all((images == 0) | (images == 255)))


def mean_pixels(images):
    """The mean of each pixel over uint8 images, in [0, 1]: what a binarized pixel is on average too."""
    return np.asarray(images).mean(axis=0, dtype=np.float64) / 255.0


def fingerprint(splits):
    """A short hash of every image and label a run sees: config.json keeps it, so that --resume and
    evaluate.py notice data replaced by other images of the same size."""
    import hashlib

    digest = hashlib.sha256()
    for array in (splits.x_train, splits.y_train, splits.x_test, splits.y_test):
        digest.update(b"none" if array is None else np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def check_fingerprint(splits, saved, run_dir):
    """Refuse data whose fingerprint differs from the one the run recorded (runs before it recorded none)."""
    if saved and fingerprint(splits) != saved:
        raise DataError(f"{splits.source}: not the images {run_dir} was trained on (same sizes, other pixels or "
                        "labels: their fingerprint changed); a run continues and is evaluated on its own data")


def as_float(images):
    """uint8 pixels -> float32 in [0, 1]."""
    return np.asarray(images).astype(np.float32) / 255.0
