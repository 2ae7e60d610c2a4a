"""Running a function over arrays batch by batch, as every distribution needs it: the held-out evaluation
(evaluation.py) and the reference classifier (classifier.py) share it."""
import numpy as np


def multiple_of_devices():
    """What every batch's rows must be a multiple of: the devices of a data-parallel distribution, or 1."""
    import keras

    distribution = keras.distribution.distribution()
    return distribution.device_mesh.devices.size if distribution is not None else 1


def predict(fn, inputs, batch_size, whole_batches=False):
    """fn applied to inputs (arrays with N rows) batch by batch, as NumPy. Under a data-parallel
    distribution each batch is padded to a multiple of the devices, which must get equal shares; with
    whole_batches, every batch to batch_size rows, so that a compiled fn is traced for one shape only."""
    import keras

    multiple = multiple_of_devices()
    n = len(inputs[0])
    outputs = []
    for start in range(0, n, batch_size):
        part = [a[start:start + batch_size] for a in inputs]
        rows = len(part[0])
        padding = batch_size - rows if whole_batches else -rows % multiple
        if padding:
            part = [np.concatenate([a, np.zeros((padding,) + a.shape[1:], a.dtype)]) for a in part]
        out = fn(*part)
        out = out if isinstance(out, (list, tuple)) else [out]
        outputs.append([np.asarray(keras.ops.convert_to_numpy(o))[:rows] for o in out])
    return [np.concatenate(parts) for parts in zip(*outputs)]
