"""mnist_vae/explorer.py: a model with a layer the page cannot run is refused."""
import pytest

from mnist_vae import explorer


@pytest.mark.backend_independent
def test_a_layer_the_page_cannot_run_is_refused():
    import keras

    decoder = keras.Sequential([keras.Input((2,)), keras.layers.Dense(784, activation="sigmoid")])
    with pytest.raises(ValueError, match="cannot run activation 'sigmoid'"):
        explorer.decoder_spec(decoder)
