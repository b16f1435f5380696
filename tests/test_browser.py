"""The leaderboard in a real headless Chromium, from disk: sort, filter, search, open a model page.

Needs Debian's ``chromium`` and the ``playwright`` Python package (never
``playwright install``: the system browser is used). Skips cleanly without them.
Screenshots go to the test's tmp folder, and also to ``$BENCH_SCREENSHOTS`` when set,
for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from _synthetic import build_synthetic_store

from bench.site import build_site

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    build_site(build_synthetic_store(root / "bench.duckdb", hostile=True), root / "site")
    return root / "site"


def _shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    if os.environ.get("BENCH_SCREENSHOTS"):
        target = Path(os.environ["BENCH_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)


def _visible_models(page) -> list[str]:
    return page.eval_on_selector_all(
        "#leaderboard tbody tr:not([hidden]) td.model a", "els => els.map(e => e.textContent.trim())")


def _tie_marks(page) -> list[bool]:
    return page.eval_on_selector_all(
        "#leaderboard tbody tr:not([hidden]) .tie", "els => els.map(e => !e.hidden)")


def test_sort_filter_search_and_model_page(browser, site, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto((site / "index.html").as_uri())

    # initial state: pretrained checkpoints, sorted by GC descending, the two resnets tied
    assert page.text_content("#f-count") == "4 of 5 shown"
    assert _visible_models(page) == ["resnet50.a1_in1k", "resnet18.a1_in1k", "convnext_atto.d2_in1k",
                                     "vit_tiny_patch16_224.augreg_in21k_ft_in1k"]
    assert _tie_marks(page) == [True, True, False, False]
    _shot(page, tmp_path, "01-index")

    # sort by top-1 (descending; the checkpoint without a top-1 goes last); no intervals, no ties
    page.click('th[data-sort="top1"]')
    assert _visible_models(page) == ["resnet50.a1_in1k", "vit_tiny_patch16_224.augreg_in21k_ft_in1k",
                                     "resnet18.a1_in1k", "convnext_atto.d2_in1k"]
    assert _tie_marks(page) == [False] * 4
    # GC twice: ascending
    page.click('th[data-sort="m:gc"]')
    page.click('th[data-sort="m:gc"]')
    assert page.get_attribute('th[data-sort="m:gc"]', "aria-sort") == "ascending"
    assert _visible_models(page)[0] == "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    assert _tie_marks(page) == [False, False, True, True]
    ranks = page.eval_on_selector_all("#leaderboard tbody tr:not([hidden]) .rank-n",
                                      "els => els.map(e => e.textContent)")
    assert ranks == ["1", "2", "3", "4"]
    _shot(page, tmp_path, "02-sorted")

    # filters: family, parameter range, search, weights
    page.select_option("#f-family", "vit")
    assert _visible_models(page) == ["vit_tiny_patch16_224.augreg_in21k_ft_in1k"]
    page.select_option("#f-family", "")
    page.fill("#f-pmax", "6")
    assert sorted(_visible_models(page)) == ["convnext_atto.d2_in1k", "vit_tiny_patch16_224.augreg_in21k_ft_in1k"]
    page.fill("#f-pmax", "")
    page.fill("#f-search", "resnet")
    assert sorted(_visible_models(page)) == ["resnet18.a1_in1k", "resnet50.a1_in1k"]
    page.fill("#f-search", "resnet 50")  # every word must match
    assert _visible_models(page) == ["resnet50.a1_in1k"]
    page.fill("#f-search", "a1_in1k")
    page.select_option("#f-weights", "")
    assert page.text_content("#f-count") == "3 of 5 shown"  # the random-weights control appears
    page.select_option("#f-license", "apache-2.0")
    page.select_option("#f-pretraining", "imagenet-1k")
    assert sorted(_visible_models(page)) == ["resnet50.a1_in1k"]
    _shot(page, tmp_path, "03-filtered")

    # the hostile family text is shown as text and never runs
    assert page.evaluate("window.__pwned") is None
    page.select_option("#f-pretraining", "")
    page.fill("#f-search", "")
    page.select_option("#f-weights", "pretrained")

    # open a model page
    page.click("text=resnet18.a1_in1k")
    page.wait_for_load_state()
    assert page.text_content("#model-title") == "resnet18.a1_in1k"
    assert "</script>" in page.text_content("table.meta")  # hostile text displayed literally
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#layers svg.chart").count() >= 5
    broken = page.eval_on_selector_all("img", "els => els.filter(e => !e.complete || e.naturalWidth === 0).length")
    assert broken == 0 and page.locator("#diffeo img").count() == 4 and page.locator("#volume img").count() == 2
    _shot(page, tmp_path, "04-model")

    assert errors == []
    assert all(url.startswith("file://") for url in requests), [u for u in requests if not u.startswith("file")]
    page.close()
