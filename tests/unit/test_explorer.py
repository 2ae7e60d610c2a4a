"""mnist_vae/explorer.py: a model with a layer the page cannot run is refused (a gated layer it runs: the browser
tests hold it to Keras)."""
import pytest

from mnist_vae import explorer


@pytest.mark.backend_independent
def test_a_layer_the_page_cannot_run_is_refused():
    import keras

    decoder = keras.Sequential([keras.Input((2,)), keras.layers.Dense(784, activation="softplus")])
    with pytest.raises(ValueError, match="cannot run activation 'softplus'"):
        explorer.decoder_spec(decoder)
    z = keras.Input((2,))  # a product of two layers that are not a gate's halves
    product = keras.layers.Multiply()([keras.layers.Dense(4)(z), keras.layers.Dense(4, activation="tanh")(z)])
    with pytest.raises(ValueError, match="only as a gated layer"):
        explorer.decoder_spec(keras.Model(z, product))
