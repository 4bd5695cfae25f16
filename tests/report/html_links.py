"""Every link of a written report resolves: files beside it exist, anchors name an element of the page."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []  # href of <a>, src of <img>/<script>
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for name in ("href", "src"):
            if attrs.get(name):
                self.targets.append(attrs[name])


def unresolved_links(page: Path) -> list[str]:
    """Links of ``page`` that point nowhere (a missing file beside it, an unknown anchor, an outside address)."""
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    missing = []
    for target in parser.targets:
        if target.startswith("data:"):
            continue
        if target.startswith("#"):
            if target[1:] not in parser.ids:
                missing.append(target)
        elif "://" in target or target.startswith("//"):
            missing.append(target)  # a report makes no outside request
        elif not (page.parent / target.split("#", 1)[0]).is_file():
            missing.append(target)
    return missing


def linked_files(page: Path) -> set[str]:
    """The files beside ``page`` that it links to."""
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return {t for t in parser.targets if not t.startswith(("data:", "#"))}
