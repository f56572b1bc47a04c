"""The HTML report opened in a real headless browser at a 1,400 x 900 window: its
tables sort, its pictures load from the files beside it, the page is small, opens
on the specs just run and never scrolls sideways.

Needs Chromium from the system's package manager (`apt-get install chromium`,
which `.ci/run` does) and the `playwright` package (the `test` extra); Playwright's
own browser download is not used."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from reports import write_report

playwright = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (pip install -e '.[test]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine: apt-get install chromium")
# As root, in a closed network: no sandbox, no background connections.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 900}
OTHER_SPEC = "another"  # sorts before the fake tree's spec: only `first` puts that one on top
LOGO = (1030, 168)  # the size of a DNA logo: three side by side are wider than the page


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    return struct.unpack(">II", png[16:24])


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """The leaderboard tests' fake tree plus a second spec, with DNA-logo-sized
    sample pictures in one cell, reported with the fake tree's spec just run."""
    from PIL import Image
    from test_leaderboard import FINAL_VALUES, SPEC, TASK, write_cell  # the same fake tree as the leaderboard tests

    root = tmp_path_factory.mktemp("results")
    for method, seeds in {**FINAL_VALUES, "rwr": {0: 0.55, 1: 0.05}}.items():
        for seed, value in seeds.items():
            write_cell(root, method, seed, value)
            write_cell(root, method, seed, value, spec=OTHER_SPEC)
    for name in ("samples_first.png", "samples_last.png", "top_designs.png"):
        Image.new("RGB", LOGO, "white").save(root / SPEC / TASK / "ucb" / "seed0" / name)
    write_report(root, first=[SPEC])
    return root


@pytest.fixture(scope="module")
def page(results):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        tab = browser.new_page(viewport=VIEWPORT)
        tab.goto((results / "index.html").as_uri(), wait_until="load")
        yield tab
        browser.close()


def column(tab, index: int) -> list[str]:
    """The text of one column of the first leaderboard, top to bottom."""
    return tab.eval_on_selector("table.leaderboard", f"t => Array.from(t.tBodies[0].rows).map(r => r.cells[{index}].textContent)")


def test_the_leaderboard_sorts_by_number_on_a_click_and_back(page):
    assert column(page, 0) == ["ucb", "greedy", "rwr"]  # by final value: 0.71, 0.40, 0.30
    headers = page.locator("table.leaderboard").first.locator("th")
    titles = headers.all_text_contents()
    auc = titles.index(next(t for t in titles if t.startswith("AUC")))
    headers.nth(auc).click()
    values = [float(v.split(" ")[0]) for v in column(page, auc)]
    assert values == sorted(values, reverse=True)
    headers.nth(auc).click()
    assert [float(v.split(" ")[0]) for v in column(page, auc)] == sorted(values)
    headers.nth(0).click()
    assert column(page, 0) == ["ucb", "rwr", "greedy"]  # names, z to a


def test_every_picture_loads_and_every_column_is_defined(page):
    sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
    assert len(sizes) == 2 + 3 and all(complete and width > 0 for complete, width in sizes)  # two curves, 3 logos
    titles = page.eval_on_selector_all("table.leaderboard th", "ths => ths.map(t => t.title)")
    assert all(titles)


def test_the_page_is_small_with_its_pictures_as_files_beside_it(results):
    from test_leaderboard import sources

    page = (results / "index.html").read_text()
    assert "data:" not in page and len(page.encode()) < 50_000  # embedded, the pictures made it megabytes
    assert sources(page) and all((results / src).is_file() for src in sources(page))


def test_it_opens_on_the_spec_just_run(page):
    from test_leaderboard import SPEC, TASK

    specs = page.eval_on_selector_all("#index > li", "items => items.map(i => i.firstChild.textContent.trim())")
    assert specs == [f"{SPEC} (just run)", OTHER_SPEC]
    assert page.eval_on_selector_all("#index a", "links => links.map(a => a.hash)") == [f"#{SPEC}--{TASK}",
                                                                                        f"#{OTHER_SPEC}--{TASK}"]
    assert page.eval_on_selector("section", "s => s.id") == f"{SPEC}--{TASK}"


def test_nothing_scrolls_sideways_at_1400_px(page):
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= VIEWPORT["width"]
    rights = page.eval_on_selector_all("img, table", "els => els.map(e => e.getBoundingClientRect().right)")
    assert max(rights) <= VIEWPORT["width"]
    logos = page.eval_on_selector_all("img.grid", "imgs => imgs.map(i => i.getBoundingClientRect().width)")
    assert len(logos) == 3 and all(500 <= w <= LOGO[0] for w in logos)  # shrunk to fit, two to a row, not a third
    screenshot = page.screenshot(full_page=True)  # as wide as the document: wider if anything scrolled sideways
    assert png_size(screenshot)[0] == VIEWPORT["width"]


def test_the_curves_are_shown_large_enough_to_read(page):
    shown = page.eval_on_selector("img.curves", "i => i.getBoundingClientRect().width")
    assert 1_000 <= shown <= VIEWPORT["width"]  # four panels with tick labels that read at full size
