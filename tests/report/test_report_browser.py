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


def write_disentanglement(study, synthetic: Synthetic) -> None:
    """Every disentanglement metric vaesim computes, UDR and the headline scores of imported dlib models, for every
    run: the widest table a report shows (it must fit the page at 1,400 and at 420 px)."""
    import numpy as np
    import pandas as pd

    from vaesim.metrics import METRIC_NAMES
    from vaesim.report.report import PUBLISHED_HEADLINES
    from vaesim.study.stages.files import write_table

    names = [*METRIC_NAMES, "udr_lasso", "udr_spearman", "udr_active_dims", *PUBLISHED_HEADLINES]
    rng = np.random.default_rng(0)
    runs = synthetic.runs()
    for run in runs.itertuples():
        rows = pd.DataFrame([dict(dataset=run.dataset, run=run.run_id, objective=run.objective,
                                  param_name=run.param_name, param=float(run.param), seed=int(run.seed),
                                  step=int(synthetic.steps[-1]), metric=name, value=float(rng.uniform(0, 1)))
                             for name in names])
        write_table(study / "disentanglement" / run.run_id / f"step_{synthetic.steps[-1]:08d}.parquet", rows,
                    checksum=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    synthetic = Synthetic()
    study = synthetic.write_study(tmp_path_factory.mktemp("browser") / "study")
    write_disentanglement(study, synthetic)
    return write_report(study)


def test_report_renders_with_all_images(report, tmp_path):
    dom = render(report, tmp_path)
    loaded, total = images_marker(dom)
    # every similarity figure but 'factors' (no such rows in the synthetic store), the two training figures and
    # the selection figure (cross-seed similarity against the disentanglement scores)
    assert total == report.read_text().count("<img ") == 9 and loaded == total
    from vaesim.report import load_findings

    assert 'id="findings"' in dom and dom.count("class=\"verdict") == len(load_findings(report.parent))


def test_a_broken_image_is_detected(report, tmp_path):
    broken = tmp_path / "broken.html"
    page = report.read_text()
    start = page.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken.write_text(page[:start] + "AAAA" + page[start + 400:])
    loaded, total = images_marker(render(broken, tmp_path))
    assert (loaded, total) == (8, 9)


LAYOUT_CHECK = """
window.addEventListener('load', function () {
  var width = window.innerWidth, problems = [];
  if (document.documentElement.scrollWidth > width + 1) problems.push('page ' + document.documentElement.scrollWidth);
  document.querySelectorAll('table').forEach(function (t) {
    if (t.getBoundingClientRect().right > width + 1) problems.push('table ' + t.id + ' past the edge');
  });
  document.querySelectorAll('td, th').forEach(function (c) {
    if (c.offsetParent !== null && c.scrollWidth > c.clientWidth + 1) problems.push('clipped cell in ' + c.closest('table').id);
  });
  document.querySelectorAll('body *').forEach(function (e) {
    var s = getComputedStyle(e), boxed = [s.overflowX, s.overflowY].some(function (v) { return v != 'visible'; });
    if (boxed && (e.scrollHeight > e.clientHeight + 1 || e.scrollWidth > e.clientWidth + 1)) problems.push('scroll box ' + e.tagName);
  });
  document.documentElement.setAttribute('data-layout', (problems.join(' | ') || 'ok') + ' @' + width);
});
"""


def layout_problems(page, width: int, tmp_path) -> str:
    """What is cut off, past the page's edge or hidden in a scroll box at ``width`` CSS pixels ('ok @width')."""
    import html as html_module

    checked = page.read_text().replace("<script>", f"<script>{LAYOUT_CHECK}</script><script>", 1)
    # headless Chromium's window is at least 500 px wide: a narrower viewport is an iframe of that width
    wrapper = tmp_path / f"at-{width}.html"
    wrapper.write_text(
        "<!DOCTYPE html><html><body style='margin:0'><iframe id='page' style='border:0' "
        f"width='{width}' height='20000' srcdoc=\"{html_module.escape(checked, quote=True)}\"></iframe><script>"
        "window.addEventListener('load', function () { document.documentElement.setAttribute('data-layout', "
        "document.getElementById('page').contentDocument.documentElement.getAttribute('data-layout')); });"
        "</script></body></html>")
    completed = subprocess.run(
        [CHROMIUM, *FLAGS, "--window-size=1400,3000", f"--user-data-dir={tmp_path / 'chromium-profile'}",
         "--dump-dom", wrapper.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r'<html[^>]*data-layout="([^"]*)"', completed.stdout)
    assert match, "the layout check did not run"
    return match.group(1)


@pytest.mark.parametrize("width", [1400, 420])
def test_every_table_fits_the_page_with_no_scroll_box_at_desktop_and_phone_width(report, tmp_path, width):
    """Screenshots and prints show every row and column: nothing is clipped, scrolled away or past the edge."""
    assert layout_problems(report, width, tmp_path) == f"ok @{width}"


def test_contents_link_every_section_and_figures_link_their_full_size_file(report):
    page = report.read_text()
    targets = re.findall(r"<li><a href='#([^']+)'>", page.split("<nav id='contents'>", 1)[1].split("</nav>", 1)[0])
    assert len(targets) >= 9
    for target in targets:
        assert f"id='{target}'" in page, target
    assert page.count("<h2") == len(targets)  # every section is in the contents
    links = re.findall(r"<figure id='fig-[^']+'><a href='([^']+)'", page)
    assert links and all((report.parent / link).is_file() for link in links)
    assert len(links) == page.count("<img ")
