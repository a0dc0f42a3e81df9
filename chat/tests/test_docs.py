"""The documentation stays true to the tree: every package of the project's apps is on the
architecture map, the README is a front page (at most ~200 lines) whose links and images
exist, and every link between the docs lands on a file and a heading that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("ghostgpt", "chat", "tools")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors of a Markdown text (outside code blocks)."""
    found, fenced = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"^#{1,6} (.+)", line)):
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            found.add(text.replace(" ", "-"))
    return found


def packages() -> list[Path]:
    return sorted(
        init.parent.relative_to(ROOT)
        for app in APPS
        for init in (ROOT / app).rglob("__init__.py")
        if "node_modules" not in init.parts
    )


def test_every_package_is_on_the_architecture_map() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [str(package) for package in packages() if f"{package.name}/" not in text]
    assert not missing, f"packages missing from docs/architecture.md: {missing}"


def test_the_readme_is_a_front_page_whose_links_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 210
    # It opens with exactly the two commands a fresh machine needs.
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.splitlines()] == ["make run", "make test"]
    for target in LINK.findall(readme):
        if target.startswith(("http://", "https://", "#")):
            continue
        assert (ROOT / target.split("#")[0]).exists(), target


def test_links_between_the_docs_land_on_files_and_headings() -> None:
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            landing = (page.parent / path) if path else page
            assert landing.exists(), f"{page.name}: {target}"
            if anchor and landing.suffix == ".md":
                assert anchor in anchors(landing.read_text()), f"{page.name}: {target}"
