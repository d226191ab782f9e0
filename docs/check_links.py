"""Check a built HTML site: every local link, image and script it references exists.

    python docs/check_links.py docs/_build/html

Parses every ``*.html`` under the folder (the standard library's ``html.parser``) and follows
each ``href``/``src`` that points inside the site: the file must exist and, for a
``page.html#anchor`` link, the anchor must be an ``id`` (or ``<a name>``) in that page.
External URLs (``http:``, ``https:``, ``mailto:``, ``data:``) are not fetched. Images must also
be non-empty files. Exit status 1 with one line per problem.
"""

from __future__ import annotations

import html.parser
import pathlib
import sys
import urllib.parse

__all__ = ["check_site"]

_EXTERNAL = ("http", "https", "mailto", "data", "javascript", "ftp")


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []  # (kind, url): kind "link", "image" or "asset"

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id",) + (("name",) if tag == "a" else ()):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "a" and attrs.get("href"):
            self.refs.append(("link", attrs["href"]))
        elif tag == "img" and attrs.get("src") is not None:
            self.refs.append(("image", attrs["src"]))
        elif tag in ("script", "link") and (attrs.get("src") or attrs.get("href")):
            self.refs.append(("asset", attrs.get("src") or attrs.get("href")))


def _parse(path: pathlib.Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def check_site(root: str | pathlib.Path) -> list[str]:
    """Problems found in the site under ``root`` (empty when every local reference resolves).

    Args:
        root: the HTML output folder (``docs/_build/html``).

    Returns:
        One line per broken link, missing image or anchor, naming the page and the target.
    """
    root = pathlib.Path(root).resolve()
    pages = sorted(root.rglob("*.html"))
    if not pages:
        return [f"no HTML page under {root}"]
    parsed: dict[pathlib.Path, _Page] = {}

    def page(path):
        if path not in parsed:
            parsed[path] = _parse(path)
        return parsed[path]

    problems = []
    for path in pages:
        for kind, url in page(path).refs:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme in _EXTERNAL or parts.netloc:
                continue
            where = f"{path.relative_to(root)}: {kind} {url!r}"
            if kind == "image" and not url.strip():
                problems.append(f"{where}: empty src")
                continue
            target = path if not parts.path else (path.parent / urllib.parse.unquote(parts.path))
            target = target.resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                shown = target.relative_to(root) if target.is_relative_to(root) else target
                problems.append(f"{where}: {shown} does not exist")
                continue
            if kind == "image" and target.stat().st_size == 0:
                problems.append(f"{where}: the image file is empty")
            if parts.fragment and target.suffix == ".html":
                anchor = urllib.parse.unquote(parts.fragment)
                if anchor not in page(target).ids:
                    problems.append(f"{where}: no anchor #{anchor} in {target.name}")
    return problems


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = pathlib.Path(argv[0] if argv else "docs/_build/html")
    problems = check_site(root)
    for line in problems:
        print(line)
    pages = len(list(root.rglob("*.html")))
    print(f"{len(problems)} broken local links or images in {pages} pages under {root}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
