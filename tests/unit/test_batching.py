"""mnist_vae/batching.py: a function over arrays batch by batch gives what one call on all of them gives, and
with whole batches it only ever sees one shape."""
import numpy as np
import pytest

from mnist_vae.batching import multiple_of_devices, predict


def test_batches_give_one_calls_result_and_whole_batches_keep_one_shape():
    x, y = np.arange(23, dtype=np.float32)[:, None], np.arange(23, dtype=np.float32)
    shapes = []

    def fn(a, b):
        shapes.append(a.shape)
        return a[:, 0] * 2 + b, a

    doubled, same = predict(fn, [x, y], batch_size=5)
    np.testing.assert_array_equal(doubled, x[:, 0] * 2 + y)
    np.testing.assert_array_equal(same, x)
    assert shapes == [(5, 1)] * 4 + [(3, 1)] * multiple_of_devices()  # the last batch as it is, on one device
    shapes.clear()
    (padded,), = [predict(lambda a, b: a[:, 0] + b, [x, y], batch_size=5, whole_batches=True)]
    np.testing.assert_array_equal(padded, x[:, 0] + y)
    assert len(padded) == 23


def test_whole_batches_call_with_one_shape_only():
    shapes = set()
    x = np.ones((23, 3), np.float32)
    predict(lambda a: shapes.add(a.shape) or a, [x], batch_size=10, whole_batches=True)
    assert shapes == {(10, 3)}


@pytest.mark.parametrize("rows", [1, 7])
def test_any_number_of_rows_comes_back(rows):
    (out,) = predict(lambda a: a + 1, [np.zeros((rows, 2), np.float32)], batch_size=4)
    assert out.shape == (rows, 2) and np.all(out == 1)
