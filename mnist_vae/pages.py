"""The pages a run writes (report.html, explorer.html), built from the template files in templates/.

Each page is one offline file: its template's CSS and JavaScript (templates/NAME.css, NAME.js) are inlined
at write time. Every value is escaped for where it lands, and all placeholders ({{name}}) are filled in one
pass, so text that looks like a placeholder inside a value is never filled in:
- plain str: HTML text or a quoted attribute value (& < > " ' escaped);
- Markup: HTML this package built from escaped parts;
- JsonData: the content of a <script type="application/json"> block (<, >, & and the JavaScript line
  separators as \\u escapes, so neither </script nor <!-- can appear in it).
Pure Python: no Keras.
"""
import html
import json
import os
import re

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


class Markup(str):
    """HTML built by this package from escaped parts: inserted as it is."""


class JsonData:
    """A JSON-ready value for a <script type="application/json"> block."""

    def __init__(self, value):
        self.value = value


def escape(text):
    """Text for HTML, in an element or a quoted attribute."""
    return html.escape(str(text), quote=True)


def json_text(value):
    """value as JSON that is safe inside any <script> element."""
    text = json.dumps(value, separators=(",", ":"))
    return re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m.group(0)], text)


def _inline(name, extension):
    with open(os.path.join(TEMPLATES, f"{name}.{extension}"), encoding="utf-8") as f:
        text = f.read()
    closing = {"css": "</style", "js": "</script"}[extension]
    if closing in text.lower() or "<!--" in text:  # would end the element (or open a comment) early
        raise ValueError(f"templates/{name}.{extension} contains {closing!r} or '<!--'")
    return Markup(text)


def _as_html(value):
    if isinstance(value, Markup):
        return str(value)
    if isinstance(value, JsonData):
        return json_text(value.value)
    return escape(value)


def render(template, **values):
    """templates/TEMPLATE.html with its CSS and JavaScript inlined ({{style}}, {{script}}) and every other
    {{placeholder}} filled from values, in one pass. A placeholder without a value is a KeyError."""
    with open(os.path.join(TEMPLATES, f"{template}.html"), encoding="utf-8") as f:
        text = f.read()
    values = {"style": _inline(template, "css"), "script": _inline(template, "js"), **values}
    return _PLACEHOLDER.sub(lambda m: _as_html(values[m.group(1)]), text)
