"""The web page in a real browser (Debian chromium through Playwright) against the real server.

The server is ``shopsearch serve`` in a subprocess on 127.0.0.1; the browser loads the page,
searches, filters by a facet, switches explanations on, logs a click, changes market and pages;
the click is then read back from the workspace's ``interactions`` table after compaction. A
mistyped query shows its spelling correction with a link to search it as typed (the workspace
logs sessions that mistype and retype, and its bundle has the ``spell`` component learned
from them). The search box's completion list is used with the keyboard and the mouse against
a second server whose bundle has a suggester trained on a small log. The API docs (``/docs``)
render with every request to another host blocked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from shopsearch.bench.server import running_server
from shopsearch.config import Settings
from shopsearch.datasets.base import LoadedData
from shopsearch.events.compaction import compact_event_log
from shopsearch.ingest.workspace import ingest
from shopsearch.store.workspace import Workspace
from shopsearch.training.index import build_index
from shopsearch.training.query import train_query_bundle

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
    ),
    pytest.mark.timeout(90),
]
WAIT_MS = 10_000

DOMAINS = pd.DataFrame(
    [("us", "United States", "en-US", "USD"), ("de", "Germany", "de-DE", "EUR")],
    columns=["domain_id", "name", "language", "currency"],
)
PRODUCTS = pd.DataFrame(
    [
        ("us", "1", "Classic grey linen sofa", "Acme", "Furniture > Sofas", 499.0, True),
        ("us", "2", "Brown leather sofa", "Bolt", "Furniture > Sofas", 899.0, True),
        ("us", "3", "Grey corner sofa bed", "Acme", "Furniture > Sofas", 649.0, True),
        ("us", "4", "Compact grey armchair", "Acme", "Furniture > Chairs", 249.0, True),
        ("us", "5", "Velvet sofa cushion set", "Bolt", "Home > Textiles", 39.0, True),
        ("us", "6", "Noise cancelling headphones", "Sonic", "Electronics > Audio", 199.0, False),
        ("us", "7", "Trail running shoes", "Swift", "Apparel > Shoes", 89.0, True),
        ("us", "13", "Brass floor lamp", "Lumo", "Home > Lighting", 129.0, True),
        ("us", "14", "Oak coffee table", "Woodly", "Furniture > Tables", 299.0, True),
        ("us", "15", "Glass side table", "Woodly", "Furniture > Tables", 149.0, True),
        ("us", "16", "Reading lamp", "Lumo", "Home > Lighting", 59.0, True),
        ("us", "17", "Kids study table", "Woodly", "Furniture > Tables", 119.0, True),
        ("de", "8", "Classic grey sofa", "Acme", "Furniture > Sofas", 549.0, True),
        ("de", "9", "Leather sofa three seater", "Bolt", "Furniture > Sofas", 999.0, True),
        ("de", "10", "Oak dining table", "Woodly", "Furniture > Tables", 399.0, True),
        ("de", "11", "Desk lamp with dimmer", "Lumo", "Home > Lighting", 49.0, True),
        ("de", "12", "Wireless earbuds", "Sonic", "Electronics > Audio", 129.0, True),
    ],
    columns=["domain", "product_id", "title", "brand", "category", "price", "in_stock"],
)
#: Sessions that mistype a query, find nothing to click and retype it (then click a product).
RETYPED = [
    ("lether sofa", "leather sofa", "2"),
    ("grey sfoa", "grey sofa", "3"),
    ("brass flor lamp", "brass floor lamp", "13"),
    ("oak cofee table", "oak coffee table", "14"),
    ("noise cancelling headphnoes", "noise cancelling headphones", "6"),
    ("trail runnign shoes", "trail running shoes", "7"),
    ("velvet cushoin set", "velvet cushion set", "5"),
    ("readng lamp", "reading lamp", "16"),
]


def _retyping_sessions(repeats: int = 15) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``requests`` and ``interactions`` of ``repeats`` sessions per row of ``RETYPED``."""
    requests, clicks = [], []
    start = pd.Timestamp("2024-01-01T00:00:00Z")
    for n in range(repeats):
        for i, (typed, meant, product) in enumerate(RETYPED):
            session, user = f"s{n}-{i}", f"u{i}"
            at = start + pd.Timedelta(minutes=len(requests))
            later = at + pd.Timedelta(seconds=10)
            requests += [
                (f"{session}-0", session, user, "us", typed, at),
                (f"{session}-1", session, user, "us", meant, later),
            ]
            clicks.append((f"{session}-1", user, product, "click", later))
    request_columns = ["request_id", "session_id", "user_id", "domain", "query", "timestamp"]
    click_columns = ["request_id", "user_id", "product_id", "kind", "timestamp"]
    return pd.DataFrame(requests, columns=request_columns), pd.DataFrame(
        clicks, columns=click_columns
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace.create(tmp_path_factory.mktemp("web") / "ws")
    requests, interactions = _retyping_sessions()
    ingest(
        ws,
        LoadedData(
            "generic",
            domains=DOMAINS,
            products=PRODUCTS,
            requests=requests,
            interactions=interactions,
        ),
    )
    settings = Settings()
    settings.retrieval.sources = ["lexical"]
    build_index(ws, settings)
    train_query_bundle(ws, settings, ["spell", "intent"])
    return ws


@pytest.fixture(scope="module")
def base_url(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(workspace.root, 1, log) as port:
        yield f"http://127.0.0.1:{port}"


#: (market, query, times typed, clicked) of the autocompletion server's log.
SEARCHES = [
    ("us", "grey sofa", 5, True),
    ("us", "grey corner sofa", 2, True),
    ("us", "green sofa", 9, False),  # never clicked: never suggested
    ("us", "reading lamp", 3, True),
    ("de", "grey sofa", 1, True),
    ("de", "grey dining table", 4, True),
]


@pytest.fixture(scope="module")
def suggest_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose bundle has a suggester trained on :data:`SEARCHES`."""
    ws = Workspace.create(tmp_path_factory.mktemp("web-suggest") / "ws")
    requests, clicks = [], []
    for domain, query, times, clicked in SEARCHES:
        for _ in range(times):
            request, stamp = f"r{len(requests)}", 1_704_103_200 + 60 * len(requests)
            requests.append((request, "u1", domain, query, stamp))
            if clicked:
                clicks.append((request, "u1", "1", "click", stamp + 5))
    ingest(
        ws,
        LoadedData(
            "generic",
            domains=DOMAINS,
            products=PRODUCTS,
            requests=pd.DataFrame(
                requests, columns=["request_id", "user_id", "domain", "query", "timestamp"]
            ),
            interactions=pd.DataFrame(
                clicks, columns=["request_id", "user_id", "product_id", "kind", "timestamp"]
            ),
        ),
    )
    settings = Settings()
    settings.retrieval.sources = ["lexical"]
    build_index(ws, settings)
    train_query_bundle(ws, settings, ["suggest"])
    log = tmp_path_factory.mktemp("server") / "suggest-server.log"
    with running_server(ws.root, 1, log) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"the page raised: {errors}"


def _search(page: Page, query: str) -> None:
    page.get_by_test_id("search-input").fill(query)
    page.get_by_test_id("search-input").press("Enter")


def test_search_filter_explain_and_click_is_logged(
    page: Page, base_url: str, workspace: Workspace
) -> None:
    page.goto(f"{base_url}/")
    select = page.get_by_test_id("domain-select")
    expect(select.locator("option")).to_have_count(2)  # one market at a time
    expect(select).to_have_value("us")  # the first declared market
    user = page.get_by_test_id("user-id").input_value()
    assert user.startswith("web-")

    _search(page, "sofa")
    results = page.get_by_test_id("result")
    expect(results).to_have_count(4)
    expect(page.get_by_test_id("result-summary")).to_contain_text("4 results")
    first = results.first
    expect(first.get_by_test_id("result-title")).to_contain_text("sofa", ignore_case=True)
    expect(first.get_by_test_id("result-brand")).not_to_be_empty()
    expect(first.get_by_test_id("result-category")).to_contain_text("Furniture")
    for price in page.get_by_test_id("result-price").all_inner_texts():
        assert "$" in price

    acme = page.locator("[data-testid=facet-value][data-facet=brand][data-value=Acme]")
    expect(acme).to_contain_text("2")
    acme.click()
    expect(results).to_have_count(2)
    expect(acme).to_have_attribute("aria-pressed", "true")
    for brand in page.get_by_test_id("result-brand").all_inner_texts():
        assert brand == "Acme"

    with page.expect_response(lambda r: "/search?" in r.url) as answer:
        page.get_by_test_id("explain-toggle").check()
    request_id = answer.value.json()["request_id"]
    stages = first.get_by_test_id("stage")
    expect(stages.first).to_have_attribute("data-stage", "retrieve.lexical")
    expect(stages.first.locator("dd")).to_have_text(re.compile(r"^\d+\.\d{4}$"))

    product_id = first.get_attribute("data-product-id")
    assert first.get_attribute("data-domain") == "us"
    first.get_by_test_id("event-click").click()
    expect(first.get_by_test_id("event-status")).to_have_text("✓ Click logged")

    acme.click()  # a second click clears the filter
    expect(results).to_have_count(4)

    compact_event_log(workspace)
    clicks = workspace.table("interactions").to_pylist()
    # a search of one market: the click is stored with that search, in that market
    assert {(c["request_id"], c["product_id"], c["kind"], c["user_id"]) for c in clicks} >= {
        (request_id, product_id, "click", user)
    }


def test_market_switch_pages_and_errors(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/")
    expect(page.get_by_test_id("domain-select").locator("option")).to_have_count(2)
    _search(page, "sofa lamp table shoes headphones earbuds armchair cushion")
    results = page.get_by_test_id("result")
    expect(results).to_have_count(10)
    expect(page.get_by_test_id("page-info")).to_have_text("Page 1 of 2")
    expect(page.get_by_test_id("prev-page")).to_be_disabled()
    page.get_by_test_id("next-page").click()
    expect(page.get_by_test_id("page-info")).to_have_text("Page 2 of 2")
    expect(results).to_have_count(2)  # all 12 us products match one of the words
    expect(page.get_by_test_id("next-page")).to_be_disabled()

    page.get_by_test_id("domain-select").select_option("de")
    expect(results).to_have_count(5)
    for price in page.get_by_test_id("result-price").all_inner_texts():
        assert "€" in price

    page.goto(f"{base_url}/?q=qwxzzkjv&domain=us")
    expect(page.get_by_test_id("notice")).to_have_text("no results for 'qwxzzkjv' in us")
    expect(results).to_have_count(0)
    page.goto(f"{base_url}/?q=sofa&domain=us&brand=Sonic")
    expect(page.get_by_test_id("notice")).to_contain_text("with these filters")
    page.get_by_test_id("suggestion").click()
    expect(results).to_have_count(4)

    page.goto(f"{base_url}/?q={'x' * 600}")
    expect(page.get_by_test_id("error")).to_be_visible()
    expect(page.get_by_test_id("error")).to_contain_text("512")
    expect(results).to_have_count(0)


def test_autocomplete_with_keyboard_and_mouse(page: Page, suggest_url: str) -> None:
    page.goto(f"{suggest_url}/")
    expect(page.get_by_test_id("domain-select")).to_have_value("us")
    box = page.get_by_test_id("search-input")
    listbox = page.get_by_test_id("autocomplete")
    options = page.get_by_test_id("autocomplete-option")
    expect(listbox).to_be_hidden()

    box.press_sequentially("gr")
    expect(listbox).to_be_visible()
    expect(box).to_have_attribute("aria-expanded", "true")
    # ranked by clicks; "green sofa" was searched most but never found anything
    expect(options).to_have_count(2)
    assert [options.nth(i).get_attribute("data-query") for i in range(2)] == [
        "grey sofa",
        "grey corner sofa",
    ]
    expect(options.first.locator("strong")).to_have_text("ey sofa")  # the completed part

    box.press("ArrowDown")
    box.press("ArrowDown")
    expect(options.nth(1)).to_have_attribute("aria-selected", "true")
    expect(box).to_have_attribute("aria-activedescendant", "autocomplete-1")
    box.press("ArrowUp")
    expect(options.first).to_have_attribute("aria-selected", "true")
    box.press("ArrowDown")
    with page.expect_response(lambda r: "/search?" in r.url) as answer:
        box.press("Enter")
    assert answer.value.json()["query"] == "grey corner sofa"
    expect(box).to_have_value("grey corner sofa")
    expect(listbox).to_be_hidden()
    expect(page.get_by_test_id("result-summary")).to_contain_text("grey corner sofa")
    assert "q=grey+corner+sofa" in page.url

    box.fill("")
    box.press_sequentially("readng")  # one letter left out
    expect(options).to_have_count(1)
    expect(options.first).to_have_attribute("data-query", "reading lamp")
    box.press("Escape")
    expect(listbox).to_be_hidden()

    box.fill("")
    box.press_sequentially("gre")
    expect(options).to_have_count(2)
    with page.expect_response(lambda r: "/search?" in r.url) as answer:
        options.first.click()
    assert answer.value.json()["query"] == "grey sofa"
    expect(listbox).to_be_hidden()

    box.fill("")
    box.press_sequentially("zzz")
    page.wait_for_timeout(300)  # the answer (no completions) has come back
    expect(listbox).to_be_hidden()

    page.get_by_test_id("domain-select").select_option("de")
    box.fill("")
    box.press_sequentially("grey")
    expect(options).to_have_count(2)
    assert options.first.get_attribute("data-query") == "grey dining table"
    box.press("Enter")  # nothing highlighted: what was typed is searched
    expect(page.get_by_test_id("result-summary")).to_contain_text("“grey”")
    expect(listbox).to_be_hidden()


def test_the_api_docs_render_offline(page: Page, base_url: str) -> None:
    elsewhere: list[str] = []

    def only_this_server(route: Route) -> None:
        if route.request.url.startswith(base_url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    page.goto(f"{base_url}/docs")
    expect(page.locator(".opblock-summary-path", has_text="/events")).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/search")).to_be_visible()
    assert elsewhere == []


def test_a_corrected_query_can_be_searched_as_typed(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/")
    expect(page.get_by_test_id("domain-select").locator("option")).to_have_count(2)
    correction = page.get_by_test_id("correction")
    summary = page.get_by_test_id("result-summary")
    _search(page, "sofa")
    expect(summary).to_contain_text("“sofa”")
    expect(correction).to_be_hidden()  # typed as meant: nothing to say

    _search(page, "lether sofa")
    expect(correction).to_be_visible()
    expect(correction).to_have_text(
        "Showing results for leather sofa · Search instead for lether sofa"
    )
    expect(correction.locator("b")).to_have_text("leather sofa")
    expect(summary).to_contain_text("for “leather sofa”")
    expect(page.get_by_test_id("result-title").first).to_have_text("Brown leather sofa")

    link = page.get_by_test_id("search-as-typed")
    assert "correct=0" in (link.get_attribute("href") or "")
    with page.expect_response(lambda r: "/search?" in r.url) as answer:
        link.click()
    assert "correct=false" in answer.value.url
    assert answer.value.json()["correction"] is None
    expect(correction).to_be_hidden()
    expect(summary).to_contain_text("for “lether sofa”")
    assert "correct=0" in page.url

    page.reload()  # the choice is in the URL
    expect(summary).to_contain_text("for “lether sofa”")
    expect(correction).to_be_hidden()
    _search(page, "lether sofa")  # a new search may be corrected again
    expect(correction).to_be_visible()
    assert "correct=0" not in page.url


def test_the_predicted_category_is_offered_as_a_filter(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/")
    expect(page.get_by_test_id("domain-select").locator("option")).to_have_count(2)
    offer = page.get_by_test_id("intent-suggestion")
    _search(page, "grey sofa")  # logged, clicked in Sofas every time
    expect(offer).to_be_visible()
    expect(offer).to_contain_text("Search in Sofas")
    link = page.get_by_test_id("intent-link")
    assert link.get_attribute("data-category") == "Furniture > Sofas"
    with page.expect_response(lambda r: "/search?" in r.url) as answer:
        link.click()
    assert "category=Furniture" in answer.value.url
    expect(offer).to_be_hidden()  # a category is chosen: nothing more to offer
    for category in page.get_by_test_id("result-category").all_inner_texts():
        assert category == "Furniture › Sofas"
    chips = page.get_by_test_id("active-filter")
    expect(chips).to_have_count(1)
