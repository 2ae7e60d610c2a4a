"""Export a run's decoder as ONNX, to draw digits outside Keras (a web page, a phone, another framework).

    python export.py outputs/RUN           # writes RUN/decoder.onnx

The file maps z (float32, (N, latent_dim)) -- and for a conditional model the digit's one-hot label
(float32, (N, 10)) -- to two outputs: "logits" (N, 28, 28, 1), the parameters of p(x|z), and "pixel_means"
(N, 28, 28, 1), what the figures draw (sigmoid(logits) under the Bernoulli, the continuous Bernoulli's mean
under it). Always float32: a run trained in mixed precision is exported from a float32 copy of its decoder.
A model trained on any backend exports: the export goes through TensorFlow and tf2onnx (Keras' own
model.export(format="onnx")), whose packages are in requirements-export.txt.
"""
import argparse
import importlib.util
import os
import sys

from mnist_vae import backends, cli

NEEDS = ("tensorflow", "tf2onnx", "onnx")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Export a run's decoder as ONNX (RUN/decoder.onnx).")
    p.add_argument("run_dir", type=cli.path_text, metavar="RUN_DIR", help="a run folder written by train.py")
    return p.parse_args(argv)


def run(args):
    from mnist_vae import build
    from mnist_vae.rundir import RunLock
    from mnist_vae.runfolder import RunFolder

    missing = [name for name in NEEDS if not _installed(name)]
    if missing:
        raise cli.UserError(f"exporting ONNX needs {', '.join(missing)}: pip install -r requirements-export.txt")
    folder = RunFolder(args.run_dir)
    folder.record  # an edited or foreign config.json is refused before Keras starts
    backends.select_backend("tensorflow")  # tf2onnx converts TensorFlow's graph, whatever the run trained on
    backends.start_keras()
    with RunLock(args.run_dir):
        _, model_path = folder.model_to_evaluate()
        vae, epoch = build.saved_model(folder, model_path)
        path = write_onnx(float32_decoder(vae, folder.settings), os.path.join(args.run_dir, "decoder.onnx"))
    inputs = "z and label (one-hot)" if vae.conditional else "z"
    print(f"wrote {path}: the decoder of epoch {epoch}, {inputs} -> logits and pixel_means (float32)")
    return 0


def _installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # a module set to None in sys.modules: as good as missing
        return False


def float32_decoder(vae, settings):
    """The run's decoder with z (and label) in, logits and pixel means out, every layer in float32."""
    import keras
    import numpy as np

    import losses
    from mnist_vae.build import model_of

    keras.mixed_precision.set_global_policy("float32")
    fresh = model_of(settings)  # the run's model rebuilt in float32 (a two-layer model's decoder is a view of it)
    fresh.set_weights(vae.get_weights())
    decoder = fresh.decoder
    logits = decoder.output  # its last layer is named "logits" (model.build_decoder)
    means = keras.layers.Lambda(lambda t: losses.pixel_means(t, vae.likelihood), name="pixel_means")(logits)
    model = keras.Model(decoder.inputs, [logits, means], name="decoder")
    model([np.zeros((1, *tuple(i.shape[1:])), np.float32) for i in model.inputs])  # Keras exports called models
    return model


def write_onnx(model, path):
    """model.export(format="onnx") into path, atomically, its outputs named for what they hold."""
    import warnings

    import onnx

    from mnist_vae.rundir import atomic_write

    def write(tmp):
        with warnings.catch_warnings():  # tf2onnx's own NumPy deprecation notices, not ours to fix
            warnings.simplefilter("ignore", FutureWarning)
            model.export(tmp, format="onnx", verbose=False)
        graph = onnx.load(tmp)
        names = dict(zip((output.name for output in graph.graph.output), model.output_names))
        for node in graph.graph.node:  # the tensors renamed wherever they are made or read
            node.output[:] = [names.get(name, name) for name in node.output]
            node.input[:] = [names.get(name, name) for name in node.input]
        for output in graph.graph.output:
            output.name = names[output.name]
        onnx.checker.check_model(graph)
        onnx.save(graph, tmp)

    return atomic_write(path, write)


def main(argv=None):
    args = parse_args(argv)
    try:
        return cli.exit_on_user_error(run, args)
    except KeyboardInterrupt:
        print("\ninterrupted; decoder.onnx is as before or complete", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
