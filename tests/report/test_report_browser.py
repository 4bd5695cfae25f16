"""The report renders in headless Chromium (Debian's package) with every image loaded."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from synthetic_store import Synthetic
from vaesim.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=10000")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                       reason="needs Debian's chromium (apt-get install chromium); required when CI is set"),
]


def render(page, tmp_path) -> str:
    """The DOM of ``page`` after load, as Chromium sees it."""
    assert CHROMIUM is not None, "chromium is not installed; .ci/run installs it with apt-get"
    completed = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def images_marker(dom: str) -> tuple[int, int]:
    match = re.search(r'<html[^>]*data-images="(\d+)/(\d+)"', dom)
    assert match, "the page's load script did not run (no data-images marker on <html>)"
    return int(match.group(1)), int(match.group(2))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return write_report(Synthetic().write_study(tmp_path_factory.mktemp("browser") / "study"))


def test_report_renders_with_all_images(report, tmp_path):
    dom = render(report, tmp_path)
    loaded, total = images_marker(dom)
    # every similarity figure but 'factors' (no such rows in the synthetic store) + the two training figures
    assert total == report.read_text().count("<img ") == 8 and loaded == total
    from vaesim.report import load_findings

    assert 'id="findings"' in dom and dom.count("class=\"verdict") == len(load_findings(report.parent))


def test_a_broken_image_is_detected(report, tmp_path):
    broken = tmp_path / "broken.html"
    page = report.read_text()
    start = page.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken.write_text(page[:start] + "AAAA" + page[start + 400:])
    loaded, total = images_marker(render(broken, tmp_path))
    assert (loaded, total) == (7, 8)
