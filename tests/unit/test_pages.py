"""mnist_vae/pages.py: the templates are filled in one pass and every value is escaped for where it lands."""
import glob
import json
import os
import re
import shutil
import subprocess

import pytest

from mnist_vae import pages

pytestmark = pytest.mark.backend_independent


def test_values_are_filled_in_one_pass_and_escaped_as_html_text():
    page = pages.render("report", name="{{status}}<b>&", status="__DATA__", explorer=pages.Markup("<i>ok</i>"),
                        command="", numbers="", warning="", figures="", history="", settings="", versions="", files="")
    assert "<h1>VAE run {{status}}&lt;b&gt;&amp;</h1>" in page  # a placeholder inside a value stays text
    assert '<p class="status">__DATA__</p>' in page and "<i>ok</i>" in page
    assert not re.search(r"\{\{\w+\}\}", page.replace("{{status}}", ""))  # nothing left unfilled


def test_a_missing_value_is_an_error_not_a_blank():
    with pytest.raises(KeyError):
        pages.render("report", name="x")


@pytest.mark.parametrize("text", ["</script><script>alert(1)</script>", "<!--<script>", "a&b>c", "\u2028\u2029",
                                  "</SCRIPT >"])
def test_json_for_a_script_block_never_ends_it_and_reads_back_the_same(text):
    block = pages.json_text({"title": text, "n": [1.5, None]})
    assert "<" not in block and ">" not in block and "&" not in block
    assert "\u2028" not in block and "\u2029" not in block
    assert json.loads(block) == {"title": text, "n": [1.5, None]}


def test_attribute_values_are_quoted_safely():
    assert pages.escape('x" onload="alert(1)') == "x&quot; onload=&quot;alert(1)"
    assert pages.escape("it's") == "it&#x27;s"


def test_the_templates_inline_without_closing_their_element_early():
    for name in ("report", "explorer"):
        page = pages.render(name, **{key: "" for key in ("name", "status", "explorer", "command", "numbers", "warning",
                                                         "figures", "history", "settings", "versions", "files", "title",
                                                         "about")}, data=pages.JsonData({}))
        assert page.count("<script") == page.lower().count("</script>")


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (apt-get install nodejs; .ci/run installs it)")
def test_the_pages_javascript_parses():
    for script in sorted(glob.glob(os.path.join(pages.TEMPLATES, "*.js"))):
        result = subprocess.run(["node", "--check", script], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
