"""Every relative link and image in the README, CONTRIBUTING.md and docs/ resolves: the file exists, and a
#fragment names a heading of that page."""
import os
import re

import pytest
from conftest import ROOT

pytestmark = pytest.mark.backend_independent
PAGES = ["README.md", "CONTRIBUTING.md"] + sorted(os.path.join("docs", name) for name in os.listdir(
    os.path.join(ROOT, "docs")) if name.endswith(".md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")


def anchors(path):
    """GitHub's ids for a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", open(path, encoding="utf-8").read(), flags=re.S)
    ids = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        ids.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return ids


def links(page):
    text = re.sub(r"```.*?```", "", open(os.path.join(ROOT, page), encoding="utf-8").read(), flags=re.S)
    return [a or b for a, b in LINK.findall(text)]


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_and_image_resolves(page):
    for target in links(page):
        if re.match(r"[a-z]+:", target):
            continue  # an address outside the repository
        path, _, fragment = target.partition("#")
        resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path else \
            os.path.join(ROOT, page)
        assert os.path.exists(resolved), f"{page}: {target} does not exist"
        if fragment:
            assert resolved.endswith(".md") and fragment in anchors(resolved), f"{page}: no heading for {target}"


def test_the_readme_is_for_learners_first():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert len(text.encode()) <= 12_000  # the rest is in docs/ and CONTRIBUTING.md
    first_screen = text[:2500]
    assert "python train.py" in first_screen and "--deselect" not in first_screen
    assert text.index("## The loss, explained") < text.index("## The flags")


def _flag_rows(page):
    """{flag: default cell} of a page's flags table (rows that start with a `--flag` cell)."""
    rows = {}
    for line in open(os.path.join(ROOT, page), encoding="utf-8"):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`--"):
            rows[cells[0].strip("`")] = cells[1].strip("`")
    return rows


def _shows(cell, default):
    """Whether a table's default cell says the setting's real default."""
    if default is None:
        return True  # "(download)", "(all)", "none": said in words
    if isinstance(default, bool):
        return cell == ("on" if default else "off")
    if isinstance(default, (int, float)):
        try:
            return float(cell) == default
        except ValueError:
            return False
    return cell == default


@pytest.mark.parametrize("page, complete", [("docs/reference.md", True), ("README.md", False)])
def test_the_flag_tables_say_each_flags_real_default(page, complete):
    """The flags' defaults live in mnist_vae/settings.py; the tables that show them are held to it."""
    from mnist_vae.settings import BY_NAME, SETTINGS

    rows = _flag_rows(page)
    flags = {setting.flag: setting for setting in SETTINGS}
    assert set(rows) <= set(flags), set(rows) - set(flags)  # no flag that does not exist
    if complete:  # docs/reference.md has every flag
        assert set(rows) == set(flags), set(flags) - set(rows)
    for flag, cell in rows.items():
        assert _shows(cell, BY_NAME[flags[flag].name].default), (page, flag, cell)
