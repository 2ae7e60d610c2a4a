"""explorer.html in a real browser (headless Chromium): its decoder draws what Keras draws, the pointer,
links and held-out points work offline, and hostile names stay text."""
import json
import os

import numpy as np
import pytest
from conftest import open_page, to_numpy

import losses
from mnist_vae import explorer, report
from model import build_vae, decoder_inputs

pytestmark = pytest.mark.backend_core  # CI runs these on PyTorch too (pytest.ini)


def model_with_varied_outputs(arch, latent_dim, conditional=False, likelihood="bernoulli", hidden=32, activation="relu",
                              seed=0):
    """A decoder whose pixels differ from z to z and from pixel to pixel: random weights a little larger
    than Keras' initialisation (which leaves a fresh conv decoder's logits all alike), random biases."""
    if arch == "two-stochastic-layers":  # its decoder: z2 through the mean of p(z1 | z2) to the pixels
        from mnist_vae.two_layer import build_two_layer_vae

        vae = build_two_layer_vae(latent_dim, hidden, activation, seed=seed)
    else:
        vae = build_vae(arch, latent_dim, hidden=hidden, seed=seed, conditional=conditional, likelihood=likelihood,
                        activation=activation)
    rng = np.random.default_rng(seed)
    weights = []
    for w in vae.decoder.get_weights():
        fan_in = w.shape[0] if w.ndim == 2 else int(np.prod(w.shape)) // max(1, w.shape[-2]) if w.ndim == 4 else 1
        weights.append(rng.normal(0, 0.5 if w.ndim == 1 else 2 / np.sqrt(fan_in), w.shape).astype(np.float32))
    vae.decoder.set_weights(weights)
    return vae


def keras_means(vae, z, labels=None):
    logits = vae.decoder(decoder_inputs(vae, np.asarray(z, np.float32), labels))
    return to_numpy(losses.pixel_means(logits, vae.likelihood)).reshape(len(z), 784)


def write_page(tmp_path, vae, codes=200, name="run"):
    run_dir = tmp_path / name
    run_dir.mkdir()
    rng = np.random.default_rng(1)
    d = int(vae.decoder.inputs[0].shape[-1])
    if codes:
        z_mean = rng.normal(size=(codes, d)) * np.linspace(2, 0.5, d)  # unequal spreads: a real principal plane
        labels, images = rng.integers(0, 10, codes), rng.uniform(size=(codes, 28, 28, 1))
    else:
        z_mean = labels = images = None
    return explorer.write(str(run_dir), vae, z_mean, labels, images, about="a test page"), (z_mean, labels, images)


CASES = {  # name: (arch, latent_dim, conditional, likelihood[, hidden, activation])
    "dense": ("dense", 2, False, "bernoulli"),
    "two-tanh-layers": ("dense", 4, False, "bernoulli", "24,16", "tanh"),  # the IWAE recipe's shape
    "conv": ("conv", 2, False, "bernoulli"),
    "conditional": ("dense", 3, True, "bernoulli"),
    "conv-conditional": ("conv", 4, True, "bernoulli"),
    "continuous-bernoulli": ("dense", 5, False, "continuous-bernoulli"),
    "gated": ("dense", 4, False, "bernoulli", "24,16", "gated"),  # the VampPrior recipe's shape
    "two-stochastic-layers": ("two-stochastic-layers", 3, False, "bernoulli", "24,16", "tanh"),  # the page moves z2
}

# Run names and texts a hostile user can choose: placeholders of the old chained fill, a script that would
# run as an attribute or an element, a comment that would swallow the page's own script.
HOSTILE_NAMES = ("__DATA__<img src=x onerror=window.pwned=1>", "__ABOUT__", "__TITLE__", "<!--<script>",
                 "{{data}}{{script}}", "x\"'><svg onload=window.pwned=1>&amp;")

HOSTILE_TEXT = "</script><script>window.pwned=1</script><!--<script>\u2028{{title}}"


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_the_pages_decoder_equals_keras_on_20_fixed_z(case, browser, tmp_path):
    arch, latent_dim, conditional, likelihood, *shape = CASES[case]
    vae = model_with_varied_outputs(arch, latent_dim, conditional, likelihood, *shape)
    path, _ = write_page(tmp_path, vae)
    z = np.random.default_rng(2).normal(scale=1.5, size=(20, latent_dim)).astype(np.float32)
    labels = np.arange(20) % 10 if conditional else None
    open_page(browser, path)
    got = np.array(browser.execute_script(
        "var labels = arguments[1];"
        "return arguments[0].map(function (z, i) { return vaeDecode(z, labels ? labels[i] : 0); });",
        z.tolist(), None if labels is None else labels.tolist()))
    expected = keras_means(vae, z, labels)
    assert got.shape == (20, 784)
    logits = to_numpy(vae.decoder(decoder_inputs(vae, z, labels)))
    assert logits.std(axis=0).mean() > 0.5  # the decodings differ enough for the comparison to mean something
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_the_pointer_redraws_the_digit_at_its_z_and_nothing_is_fetched(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    vae = model_with_varied_outputs("dense", 2)
    path, _ = write_page(tmp_path, vae)
    browser.get_log("performance")  # forget earlier pages' requests
    open_page(browser, path)
    plane = browser.find_element("id", "plane")
    drawn = []
    for dx, dy in ((-150, -120), (170, 90)):  # offsets from the plane's centre, in CSS pixels
        ActionChains(browser).move_to_element_with_offset(plane, dx, dy).perform()
        state = browser.execute_script("return window.explorer")
        z = np.array(state["z"], np.float32)
        shown = json.loads(browser.find_element("id", "z").get_attribute("data-z"))
        np.testing.assert_allclose(shown, z, rtol=1e-6)
        # The big canvas (10 x 10 CSS pixels per image pixel): dark digits on white, 255 * (1 - mean).
        canvas = np.array(browser.execute_script(
            "var c = document.getElementById('digit'), w = c.width;"
            "var d = c.getContext('2d').getImageData(0, 0, w, c.height).data, out = [];"
            "for (var i = 0; i < 28; i++) for (var j = 0; j < 28; j++)"
            "  out.push(d[4 * ((i * 10 + 5) * w + j * 10 + 5)]);"
            "return out;"), float)
        expected = np.round(255 * (1 - keras_means(vae, z[None])[0]))
        np.testing.assert_allclose(canvas, expected, atol=1)
        drawn.append(canvas)
    assert np.abs(drawn[0] - drawn[1]).mean() > 5  # another z, another digit
    page_url = "file://" + os.path.abspath(path)
    requests = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    urls = [m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"]
    assert urls and all(url == page_url or url.startswith("data:") for url in urls), urls
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0


@pytest.mark.slow
def test_a_link_opens_at_its_point_and_label(browser, tmp_path):
    vae = model_with_varied_outputs("dense", 2)
    path, _ = write_page(tmp_path, vae, name="plain")
    open_page(browser, path, "#z=0.5,-1.2")
    state = browser.execute_script("return window.explorer")
    np.testing.assert_allclose(state["z"], [0.5, -1.2], rtol=1e-6)
    np.testing.assert_allclose(state["pixels"], keras_means(vae, [[0.5, -1.2]])[0], atol=1e-4)
    assert not browser.find_element("id", "message").is_displayed()

    conditional = model_with_varied_outputs("dense", 3, conditional=True)
    path, _ = write_page(tmp_path, conditional, name="conditional")
    open_page(browser, path, "#z=0.25,-1,2&label=3")
    state = browser.execute_script("return window.explorer")
    np.testing.assert_allclose(state["z"], [0.25, -1, 2], rtol=1e-6)
    assert state["label"] == 3
    np.testing.assert_allclose(state["pixels"], keras_means(conditional, [[0.25, -1, 2]], [3])[0], atol=1e-4)
    # The digit picker changes the label while z stays: the style stays, the digit changes.
    browser.find_element("css selector", "#digits button[data-label='7']").click()
    state = browser.execute_script("return window.explorer")
    np.testing.assert_allclose(state["z"], [0.25, -1, 2], rtol=1e-6)
    assert state["label"] == 7 and browser.current_url.endswith("#z=0.25,-1,2&label=7")
    np.testing.assert_allclose(state["pixels"], keras_means(conditional, [[0.25, -1, 2]], [7])[0], atol=1e-4)


@pytest.mark.slow
def test_held_out_points_show_their_reconstruction_and_two_their_interpolation(browser, tmp_path):
    vae = model_with_varied_outputs("dense", 3)
    path, (z_mean, _, _) = write_page(tmp_path, vae)
    open_page(browser, path)
    for n in (0, 1):
        # Click where the page draws point n (its own projection, in canvas pixels).
        browser.execute_script(
            "var c = document.getElementById('plane'), r = c.getBoundingClientRect(), p = arguments[0];"
            "c.dispatchEvent(new MouseEvent('click', {clientX: r.left + p[0] * r.width / c.width, "
            "clientY: r.top + p[1] * r.height / c.height, bubbles: true}));",
            browser.execute_script(f"return window.explorerPixelOf({n})"))
    state = browser.execute_script("return window.explorer")
    np.testing.assert_allclose(state["z"], z_mean[1], rtol=1e-5, atol=1e-6)  # the second point's code, exactly
    assert len(browser.find_elements("css selector", "#selected canvas")) == 4  # two images, two reconstructions
    assert len(browser.find_elements("css selector", "#interpolation canvas")) == 10
    sliders = browser.find_elements("css selector", "#sliders input[type=range]")
    assert len(sliders) == 3  # one per latent dimension


@pytest.mark.slow
def test_bad_links_and_missing_codes_get_a_line_on_the_page(browser, tmp_path):
    vae = model_with_varied_outputs("dense", 2)
    path, _ = write_page(tmp_path, vae)
    for fragment in ("#z=1,2,3", "#z=a,b", "#z=", "#z=1,,2", "#z=%", "#z=%E0%A4%A", "#z=1e39,1", "#z=-1e39,1",
                     "#%=1&z=%zz"):
        open_page(browser, path, fragment)
        message = browser.find_element("id", "message")
        assert message.is_displayed() and "2 numbers" in message.text, fragment
        assert "showing the origin" in message.text, fragment
        assert browser.execute_script("return window.explorer.z") == [0, 0]  # it opens at the origin instead
    open_page(browser, path, "#label=%")  # a malformed escape beside a good z: the page starts all the same
    assert browser.execute_script("return window.explorer.z") == [0, 0]
    assert "not conditional" in browser.find_element("id", "message").text
    wide, _ = write_page(tmp_path, model_with_varied_outputs("dense", 5), name="five")
    open_page(browser, wide, "#z=1,2")
    assert "showing the point of the plane nearest the origin" in browser.find_element("id", "message").text
    html = open(path, encoding="utf-8").read()
    assert "<noscript>" in html and "JavaScript" in html.split("<noscript>")[1].split("</noscript>")[0]
    bare, _ = write_page(tmp_path, vae, codes=0, name="no-codes")
    open_page(browser, bare)
    message = browser.find_element("id", "message")
    assert message.is_displayed() and "no held-out codes" in message.text
    assert browser.execute_script("return window.explorer.points") == 0


@pytest.mark.slow
def test_decoding_speed_and_page_size_of_the_default_models(browser, tmp_path):
    """Printed for the record (python -m pytest -s): ms per decoded z in this browser, and the page's size."""
    for name, arch in (("dense", "dense"), ("conv", "conv")):
        vae = build_vae(arch, 2, hidden=512, seed=0)  # train.py's defaults
        path, _ = write_page(tmp_path, vae, codes=explorer.MAX_POINTS, name=name)
        open_page(browser, path)
        ms = browser.execute_script("var s = performance.now(); for (var i = 0; i < 40; i++) vaeDecode([0.3, -0.7], 0);"
                                    "return (performance.now() - s) / 40;")
        size = os.path.getsize(path)
        print(f"explorer.html, default {name} model: {ms:.2f} ms per z in headless Chromium, page {size / 1e6:.2f} MB")
        assert size < 5e6, name  # float32 weights and 500 held-out images


@pytest.mark.slow
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_run_name_is_shown_as_text_and_runs_nothing(name, browser, tmp_path):
    vae = model_with_varied_outputs("dense", 2)
    run_dir = tmp_path / name
    run_dir.mkdir()
    rng = np.random.default_rng(0)
    path = explorer.write(str(run_dir), vae, rng.normal(size=(30, 2)), rng.integers(0, 10, 30),
                          rng.uniform(size=(30, 28, 28, 1)), about=HOSTILE_TEXT)
    open_page(browser, path)
    assert browser.execute_script("return window.pwned") is None
    assert browser.find_element("tag name", "h1").text == f"Latent space of {name}"
    assert browser.execute_script("return document.title") == f"Latent space of {name}"
    assert HOSTILE_TEXT.replace("\u2028", " ").strip() in browser.find_element("tag name", "p").text.replace(
        "\u2028", " ")
    assert len(browser.execute_script("return vaeDecode([0.5, -1])")) == 784  # the decoder works
    assert browser.execute_script("return window.explorer.points") == 30
    config = {"command": HOSTILE_TEXT, "data": HOSTILE_TEXT, "run_dir": str(run_dir), "epochs": 1}
    page = report.write(str(run_dir), config, {"epochs": 1, "partial": False}, None, [], "finished: 1 epoch")
    browser.get("file://" + page)
    assert browser.execute_script("return window.pwned") is None
    assert browser.find_element("tag name", "h1").text == f"VAE run {name}"
    assert HOSTILE_TEXT.split("\u2028")[0] in browser.find_element("tag name", "pre").text  # the command, as text


@pytest.mark.slow
def test_draws_come_from_the_learned_prior_when_the_model_has_one(browser, tmp_path):
    """A VampPrior model's page draws z from its mixture: with three sharp components, every draw lands on one
    of their means, and the button says where it draws from."""
    from mnist_vae.vampprior import VampPriorVAE

    plain = model_with_varied_outputs("dense", 3)
    vae = VampPriorVAE(plain.encoder, plain.decoder, pseudo_inputs=3, seed=0)
    means = np.array([[2.0, 0, 0], [0, -2.0, 0], [0, 0, 3.0]], np.float32)
    vae.prior.components = lambda: (means, np.full((3, 3), -20.0, np.float32))  # sharp: std 5e-5
    path, _ = write_page(tmp_path, vae)
    open_page(browser, path)
    button = browser.find_element("id", "sample")
    assert button.text == "draw z from the learned VampPrior"
    seen = set()
    for _ in range(30):
        button.click()
        z = np.array(browser.execute_script("return window.explorer.z"))
        distances = np.abs(means - z).max(axis=1)
        assert distances.min() < 1e-3, z
        seen.add(int(distances.argmin()))
    assert seen == {0, 1, 2}  # each component drawn (30 draws: all three with probability 1 - 3 (2/3)^30)
