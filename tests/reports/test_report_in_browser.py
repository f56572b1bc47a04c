"""The HTML report opened in a real headless browser: its tables sort and its pictures load.

Needs Chromium from the system's package manager (`apt-get install chromium`,
which `.ci/run` does) and the `playwright` package (the `test` extra); Playwright's
own browser download is not used."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reports import write_report

playwright = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (pip install -e '.[test]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine: apt-get install chromium")
# As root, in a closed network: no sandbox, no background connections.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from test_leaderboard import FINAL_VALUES, write_cell  # the same fake tree as the leaderboard tests

    root = tmp_path_factory.mktemp("results")
    for method, seeds in {**FINAL_VALUES, "rwr": {0: 0.55, 1: 0.05}}.items():
        for seed, value in seeds.items():
            write_cell(root, method, seed, value)
    write_report(root)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        tab = browser.new_page()
        tab.goto((Path(root) / "index.html").as_uri())
        yield tab
        browser.close()


def column(tab, index: int) -> list[str]:
    return tab.eval_on_selector_all("table.leaderboard tbody tr", f"rows => rows.map(r => r.cells[{index}].textContent)")


def test_the_leaderboard_sorts_by_number_on_a_click_and_back(page):
    assert column(page, 0) == ["ucb", "greedy", "rwr"]  # by final value: 0.71, 0.40, 0.30
    headers = page.locator("table.leaderboard th")
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
    assert sizes and all(complete and width > 0 for complete, width in sizes)
    titles = page.eval_on_selector_all("table.leaderboard th", "ths => ths.map(t => t.title)")
    assert all(titles)
    assert page.locator("#index a").count() == 1
