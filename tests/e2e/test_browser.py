"""The jobs page in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright): a labelled job runs
on a live server, the page is opened, filtered by the label with its form, and the job's row is checked (status,
progress, label, links to logs and results, which are followed). A screenshot lands in tests/artifacts/."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from ades.client import Client
from ades.config import Settings
from tests.e2e.conftest import LiveServer, serve_app
from tests.e2e.test_batches import ECHO_OR_FAIL
from tests.helpers import EXAMPLES

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"



@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        # a failure, not a skip: the browser test must not pass (or vanish) without a browser
        pytest.fail("chromium is not installed: ./scripts/test.sh installs it as root (scripts/_browser.sh), "
                    "or run `apt-get install -y chromium`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser, live: LiveServer) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    local = urlsplit(live.url).netloc

    def only_local(route: Route) -> None:
        # the test stays on 127.0.0.1: a page naming anything elsewhere must not wait for the internet
        if urlsplit(route.request.url).netloc == local:
            route.continue_()
        else:
            route.abort()

    page.route("**/*", only_local)
    try:
        yield page
    finally:
        context.close()


def test_jobs_page_filters_by_label(live: LiveServer, page: Page) -> None:
    client = Client(live.url)
    client.http.trust_env = False
    client.deploy(EXAMPLES / "failing" / "failing.cwl")
    label = f"browser-{uuid.uuid4().hex[:8]}"
    job = client.execute("echo", {"message": "seen in a browser"}, labels=[label, "browser"])
    assert job.wait(timeout=120) == "successful"
    failed = client.execute("failing", {}, labels=["browser"])  # same page, another label: must be filtered out
    assert failed.wait(timeout=120) == "failed"
    live.context.job_store.refresh()  # searches see a status once ES refreshes (1 s); do not wait for it

    page.goto(f"{live.url}/jobs?f=html", wait_until="domcontentloaded")
    assert page.locator(f'tr.job[data-job-id="{failed.id}"]').count() == 1

    page.fill("#filter-labels", label)
    page.select_option("#filter-status", "successful")
    with page.expect_navigation(wait_until="domcontentloaded"):
        page.click("#job-filter button[type=submit]")
    query = parse_qs(urlsplit(page.url).query)
    assert query["labels"] == [label] and query["status"] == ["successful"] and query["f"] == ["html"]

    rows = page.locator("tr.job")
    assert rows.count() == 1
    row = page.locator(f'tr.job[data-job-id="{job.id}"]')
    assert row.locator(".status").inner_text() == "successful"
    assert row.locator(".job-progress").inner_text().strip() == "100%"
    assert sorted(row.locator(".labels .label").all_inner_texts()) == sorted([label, "browser"])
    assert row.locator(".process").inner_text() == "echo:1.0.0"
    # the filters are kept in the form after filtering
    assert page.input_value("#filter-labels") == label
    assert page.input_value("#filter-status") == "successful"

    logs_href = row.locator("a.logs").get_attribute("href")
    results_href = row.locator('a.results[type="application/json"]').get_attribute("href")
    assert logs_href == f"{live.url}/jobs/{job.id}/logs"
    assert results_href == f"{live.url}/jobs/{job.id}/results"

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "jobs-page.png"), full_page=True)
    text = page.inner_text("body")
    assert label in text and job.id in text and failed.id not in text
    assert (ARTIFACTS / "jobs-page.png").stat().st_size > 0

    # the links work from the browser: the log has the message, the results name the output file
    page.goto(logs_href)
    assert "seen in a browser" in page.inner_text("body")
    page.goto(results_href)
    assert f"/jobs/{job.id}/results/out" in page.inner_text("body")


def test_jobs_page_shows_a_batch_its_children_and_a_created_job(live: LiveServer, page: Page) -> None:
    """A batch's row shows its counts, progress and failed children with their reasons, and leads to its children;
    a created job is shown as not started."""
    assert live.post("/processes", data=ECHO_OR_FAIL,
                     headers={"Content-Type": "application/cwl+yaml"}).status_code in (201, 409)
    client = Client(live.url)
    client.http.trust_env = False
    label = f"page-batch-{uuid.uuid4().hex[:8]}"
    items = [{"inputs": {"message": m}} for m in ("alpha", "beta", "fail here", "gamma")]
    batch = client.execute("echo-or-fail", {}, labels=[label], batch=items)
    draft = client.create("echo", {"message": "a draft"}, labels=[label])
    assert batch.wait(timeout=120) == "failed"
    live.context.job_store.refresh()

    page.goto(f"{live.url}/jobs?f=html&labels={label}", wait_until="domcontentloaded")
    row = page.locator(f'tr.job[data-job-id="{batch.id}"]')
    counts = row.locator(".batch-counts")
    assert (counts.get_attribute("data-ended"), counts.get_attribute("data-total")) == ("4", "4")
    assert "successful 3" in counts.inner_text() and "failed 1" in counts.inner_text()
    failed = row.locator(".failed-child")
    assert failed.count() == 1 and "#2" in failed.inner_text() and "failing on purpose" in failed.inner_text()
    created = page.locator(f'tr.job[data-job-id="{draft.id}"]')
    assert created.locator(".status").inner_text() == "created"
    assert created.locator(".not-started").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "jobs-page-batch.png"), full_page=True)

    with page.expect_navigation(wait_until="domcontentloaded"):
        row.locator("a.children").click()
    assert page.input_value("#filter-parent") == batch.id
    children = page.locator("tr.job")
    assert children.count() == 4
    assert sorted(children.locator(".status").all_inner_texts()) == ["failed"] + ["successful"] * 3
    assert page.locator("a.parent").count() == 4
    page.screenshot(path=str(ARTIFACTS / "jobs-page-children.png"), full_page=True)


def test_jobs_page_by_accept_header_and_empty_filter(live: LiveServer, page: Page) -> None:
    # a browser asks for text/html first: the same page without ?f=html
    page.goto(f"{live.url}/jobs?labels=no-such-label-{uuid.uuid4().hex[:6]}")
    assert page.locator("form#job-filter").count() == 1
    assert "no jobs match" in page.inner_text("table.job-list")
    assert page.locator("tr.job").count() == 0


def test_labels_are_text_not_markup(live: LiveServer, page: Page) -> None:
    client = Client(live.url)
    client.http.trust_env = False
    label = f"<img src=x onerror=\"window.injected=1\">{uuid.uuid4().hex[:6]}"
    client.execute("echo", {"message": "escaped"}, labels=[label]).wait(timeout=120)
    live.context.job_store.refresh()
    page.goto(f"{live.url}/jobs?f=html")
    page.fill("#filter-labels", label)
    with page.expect_navigation(wait_until="load"):
        page.click("#job-filter button[type=submit]")
    assert page.locator(".labels .label").all_inner_texts() == [label]  # shown as typed
    assert page.locator(".labels img").count() == 0 and page.evaluate("window.injected") is None


ASSET = re.compile(r'<(?:link\b[^>]*\brel="(?:stylesheet|icon|shortcut icon)"[^>]*\bhref|script\b[^>]*\bsrc|'
                   r'img\b[^>]*\bsrc)="([^"]+)"')


def test_every_asset_the_pages_load_is_served_here(live: LiveServer, browser: Browser) -> None:
    """No page names an outside stylesheet, script or image: each one is served by the server itself, and a browser
    allowed to reach nothing else loads the frame's logo and Bootstrap's stylesheet."""
    for path in ("/?f=html", "/jobs?f=html", "/conformance?f=html", "/openapi?f=html"):  # the pages with HTML
        html = live.get(path).text
        found = ASSET.findall(html)
        assert found, path
        for url in found:
            assert urlsplit(url).netloc == urlsplit(live.url).netloc, f"{path} loads {url} from elsewhere"
            assert live.get(urlsplit(url).path).status_code == 200, url
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    local = urlsplit(live.url).netloc
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.route("**/*", lambda route: route.continue_() if urlsplit(route.request.url).netloc == local
               else (failed.append(route.request.url), route.abort()))
    try:
        page.goto(f"{live.url}/jobs?f=html", wait_until="load")
        assert not failed, failed
        # Bootstrap's stylesheet loaded from this server, whole
        assert page.evaluate("""[...document.styleSheets].some(s => s.href
            && s.href.endsWith('/assets/bootstrap/css/bootstrap.min.css') && s.cssRules.length > 100)""")
        logo = page.locator('img[title="pygeoapi logo"]')
        assert logo.evaluate("img => img.naturalWidth") > 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "jobs-page-frame.png"), full_page=True)
    finally:
        context.close()


def test_each_app_of_a_process_frames_its_pages_with_its_own_url(live: LiveServer, e2e_settings: Settings,
                                                                 tmp_path: Path) -> None:
    """pygeoapi caches the configuration it renders frames with once per process: a second app in the same process
    must still name itself, not the first app, in its pages' links."""
    other_settings = e2e_settings.model_copy(update={"index_prefix": f"test-{uuid.uuid4().hex[:10]}-",
                                                     "data_dir": tmp_path / "data"})
    servers = [live]
    other = serve_app(other_settings)
    servers.append(next(other))
    try:
        for server in servers:
            for path in ("/?f=html", "/conformance?f=html", "/jobs?f=html"):
                found = ASSET.findall(server.get(path).text)
                assert found and {urlsplit(url).netloc for url in found} == {urlsplit(server.url).netloc}, found
    finally:
        other.close()


def test_the_openapi_page_renders_without_the_internet(live: LiveServer, page: Page) -> None:
    """Swagger UI (script, stylesheet, icons) comes from this server and renders every route of the document; the
    ReDoc viewer, which nothing here serves, leads to the same page."""
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(f"{live.url}/openapi?f=html&ui=redoc", wait_until="load")
    assert page.url == f"{live.url}/openapi?f=html"
    page.wait_for_selector(".opblock", timeout=30_000)
    assert not failed, failed
    routes = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/processes/{processId}/execution" in {route.replace("\u200b", "") for route in routes}, routes
    assert page.evaluate("[...document.styleSheets].some(s => s.href && s.href.endsWith('/swagger-ui.css'))")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "openapi-page.png"))


PAGE_OUTPUT = """
cwlVersion: v1.2
class: CommandLineTool
id: writes-a-page
baseCommand: [sh, -c]
arguments: ['printf "%s" "$0" > page.html', $(inputs.html)]
inputs:
  html: string
outputs:
  page: {type: File, format: "http://www.iana.org/assignments/media-types/text/html", outputBinding: {glob: page.html}}
"""


def test_a_jobs_own_html_output_is_given_as_written(live: LiveServer) -> None:
    """Only the server's pages get their asset links rewritten: a job's HTML output naming Bootstrap elsewhere (or
    an old-IE comment) comes back byte for byte, by reference and by value."""
    html = ('<html><head><link rel="stylesheet" href="/cdn/bootstrap@5.1.3/dist/css/bootstrap.min.css">'
            '<!--[if lt IE 9]><script src="/old.js"></script><![endif]--></head></html>')
    deployed = live.post("/processes", data=PAGE_OUTPUT, headers={"Content-Type": "application/cwl+yaml"})
    assert deployed.status_code in (201, 409), deployed.text
    job = live.post("/processes/writes-a-page/execution", json={"inputs": {"html": html}},
                    headers={"Prefer": "respond-async"}).json()["jobID"]
    assert live.wait_status(job)["status"] == "successful"
    by_reference = live.get(f"/jobs/{job}/results/page")
    assert by_reference.headers["Content-Type"].startswith("text/html") and by_reference.text == html
    raw = live.post("/processes/writes-a-page/execution", json={
        "inputs": {"html": html}, "response": "raw", "outputs": {"page": {"transmissionMode": "value"}}})
    assert raw.status_code == 200 and raw.text == html
