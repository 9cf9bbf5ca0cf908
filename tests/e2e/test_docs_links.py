"""The README and docs/ stay inside the repository and hold together: every
relative link reaches a file of the repository (and, with a #fragment, a
heading of that page); no page sends the reader to a folder outside it or
speaks of issue numbers. (Every page of docs/ is linked from the README and
the docs index by hand: a new page is not blocked on it.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*/README.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
OUTSIDE = re.compile(r"\.\./shared|\b(?:DOMAIN|DESIGN)\.md|(?i:issue #?\d|(?<![\w`])#\d+\b)")


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text("utf-8"), flags=re.S | re.M)
    ids = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        ids.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return ids


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_every_relative_link_reaches_the_repository(page):
    for target in LINK.findall(page.read_text("utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # an absolute URL (googleapis, ...), named as such
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.is_relative_to(ROOT), f"{name(page)}: {target} leaves the repository"
        assert linked.exists(), f"{name(page)}: {target} does not exist"
        if fragment and linked.suffix == ".md":
            assert fragment in anchors(linked), f"{name(page)}: no heading #{fragment} in {name(linked)}"


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_no_page_points_outside_the_product(page):
    for number, line in enumerate(page.read_text("utf-8").splitlines(), 1):
        assert not OUTSIDE.search(line), f"{name(page)}:{number}: {line.strip()[:100]}"


def test_the_checks_catch_a_page_that_leaves():
    assert OUTSIDE.search("Domain: `../shared/DOMAIN.md`.")
    assert OUTSIDE.search("Against the goals of issue #5")
    assert not OUTSIDE.search("the `#` of a heading, `fee_lines[2].cnt`")
    assert "errors-in-order-of-precedence" in anchors(ROOT / "docs" / "api.md")
