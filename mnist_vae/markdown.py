"""What a user typed (a run name, a data path, a command, a setting), put into the Markdown files the project
writes (a run's model card README.md, compare.py's comparison.md) so that it shows as typed and is never read as
Markdown or HTML: no heading, rule, link, image or tag of the user's making. Pure Python.

CommonMark lets any ASCII punctuation be escaped with a backslash: what could act inline (emphasis, code, links,
images, table cells) is escaped everywhere, what acts only at a line's start (a heading, a list) at the start;
HTML's own <, > and & become entities (which Markdown shows as the characters, and no HTML parser reads as a
tag); a line break, which could start a block (a rule, a heading, a list), becomes a space. A code span's content
is shown literally, so there only the backticks that would end it and the line breaks matter.
"""
import re

_INLINE = re.compile(r"([\\`*_\[\]!|~])")  # what can act in the middle of a line (emphasis, code, links, cells)
# What acts only at a line's start: a heading, a list item, a rule or a heading's underline (a quote's > is an entity).
_LINE_START = re.compile(r"^(\s*)(#{1,6}(?=\s|$)|[-+*](?=\s|$)|\d{1,9}[.)](?=\s|$)|[-=*_](?=[-=*_\s]*$))")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def _one_line(value):
    return re.sub(r"[\r\n\u2028\u2029\x0b\x0c\x85]", " ", str(value))


def text(value):
    """value as Markdown text that renders as exactly its characters (on one line)."""
    escaped = _INLINE.sub(r"\\\1", _one_line(value))
    escaped = _LINE_START.sub(lambda m: m[1] + m[2][:-1] + "\\" + m[2][-1], escaped)
    return re.sub("[&<>]", lambda m: _ENTITIES[m.group(0)], escaped)


def cell(value):
    """value for a cell of a Markdown table (GFM): text, whose escaped | cannot end the cell."""
    return text(value)


def code(value):
    """value as an inline code span that holds it whole: fenced by more backticks than its longest run of them,
    padded with a space where it begins or ends with a backtick (CommonMark strips one such space)."""
    content = _one_line(value)
    fence = "`" * (max((len(run) for run in re.findall("`+", content)), default=0) + 1)
    pad = " " if content.startswith(("`", " ")) or content.endswith(("`", " ")) else ""
    return f"{fence}{pad}{content}{pad}{fence}"
