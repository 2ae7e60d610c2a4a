"""report.html in a real browser (headless Chromium): every image loads and the page renders."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

pytestmark = pytest.mark.backend_independent

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium; .ci/run installs it)")
def test_the_report_renders_in_a_headless_browser_with_every_image(tmp_path, finished_run):
    from PIL import Image

    url = "file://" + os.path.join(finished_run, "report.html")
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(browser + ["--virtual-time-budget=10000", "--dump-dom", url], capture_output=True,
                         text=True, timeout=120)
    loaded = re.search(r'<body data-images-loaded="(\d+)" data-images="(\d+)"', dom.stdout)
    assert loaded, dom.stdout[:500] + dom.stderr[-1500:]
    assert loaded.group(1) == loaded.group(2) == "8"  # every image decoded in the browser
    shot = tmp_path / "shot.png"
    subprocess.run(browser + [f"--screenshot={shot}", "--window-size=1100,1600", url], capture_output=True,
                   timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (1600, 1100)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.02  # text and figures, not a blank page


@pytest.mark.slow
@pytest.mark.multiprocess
def test_the_page_never_scrolls_sideways_only_its_wide_tables_do(browser, finished_run):
    """At a phone's width the page fits the window: the figures shrink to it, and a table wider than the page
    (the history's many columns, a long path among the settings) scrolls inside its own box."""
    browser.set_window_size(480, 900)
    try:
        browser.get("file://" + os.path.join(finished_run, "report.html"))
        page = browser.execute_script("return [document.documentElement.scrollWidth, "
                                      "document.documentElement.clientWidth]")
        boxes = browser.execute_script("return Array.from(document.querySelectorAll('table')).map(t => "
                                       "[t.parentElement.scrollWidth, t.parentElement.clientWidth])")
    finally:
        browser.set_window_size(1200, 1000)
    assert page[0] <= page[1], page
    assert any(inner > outer for inner, outer in boxes), boxes  # the history table is wider than the window
