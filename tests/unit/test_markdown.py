"""mnist_vae/markdown.py: what a user typed shows as typed in the Markdown files the project writes, rendered by a
CommonMark renderer with raw HTML on (as model hubs and editors render a README): no tag, rule, heading, link or
code span of the user's making; and a run's model card and compare.py's table use it for every such value."""
import html
import re

import pytest
from markdown_it import MarkdownIt

from mnist_vae import card, markdown

pytestmark = pytest.mark.backend_independent

HOSTILE = ["x\n---\n<img src=x onerror=alert(1)>", "a`b``c`", "# heading", "[link](javascript:alert(1))",
           "![img](x)", "*em* _em_ **strong** ~~del~~", "&amp; &lt;b&gt; \\<b\\>", "1. item", "- item", "> quote",
           "a | b", "<script>alert(1)</script>", "plain run-name_2.5 (copy)"]
RENDER = MarkdownIt("commonmark").enable("table")


def visible(rendered):
    """The text a reader sees: the tags' own markup stripped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()


@pytest.mark.parametrize("value", HOSTILE)
def test_text_and_code_show_what_was_typed_and_nothing_else(value):
    one_line = value.replace("\n", " ")
    for rendered in (RENDER.render(markdown.text(value)), RENDER.render(f"# {markdown.text(value)}"),
                     RENDER.render(f"- Data: {markdown.text(value)}.")):
        assert re.findall(r"<(\w+)", rendered) in (["p"], ["h1"], ["ul", "li"]), rendered  # no tag of the user's
        assert one_line in visible(rendered)
    rendered = RENDER.render(f"- Reproduce: {markdown.code(value)}")
    assert re.findall(r"<(\w+)", rendered) == ["ul", "li", "code"], rendered
    assert visible(rendered.split("<code>")[1].split("</code>")[0]) == one_line  # the span holds it whole
    table = RENDER.render(f"| a | b |\n| --- | --- |\n| {markdown.cell(value)} | after |")
    assert visible(table.split("<td>")[1].split("</td>")[0]) == one_line
    assert "<td>after</td>" in table  # the cell did not end early


def test_the_model_card_escapes_the_run_name_the_data_path_and_the_command(tmp_path):
    from test_card import CONFIG, EVALUATION

    name = "x\n---\n<img src=x onerror=alert(1)>"
    config = {**CONFIG, "data_source": "/data/`<img src=x onerror=alert(1)>`/mnist",
              "command": "python train.py --data '/data/`<img src=x onerror=alert(1)>`/mnist'"}
    text = card.render(str(tmp_path / name), config, {"epochs": 30, "partial": False}, EVALUATION)
    body = text.split("\n---\n", 2)[-1]  # after the YAML metadata (checked by test_card)
    rendered = RENDER.render(body)
    assert "<img" not in rendered and "<hr" not in rendered
    assert "&lt;img src=x onerror=alert(1)&gt;" in rendered
    assert f"<h1>{html.escape(name.replace(chr(10), ' '), quote=False)}</h1>" in rendered
    assert f"<code>{html.escape(config['command'], quote=False)}</code>" in rendered
