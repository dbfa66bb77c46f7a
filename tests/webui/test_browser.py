"""The app in a real browser: Playwright driving Debian's headless Chromium.

Skipped (with the reason) when /usr/bin/chromium or the playwright package is missing,
unless SPACESEC_REQUIRE_BROWSER=1, which turns that into a failure. Never run
``playwright install``: the system Chromium is used. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
REQUIRE_BROWSER = os.environ.get("SPACESEC_REQUIRE_BROWSER") == "1"
ANSWER_TIMEOUT_MS = 60_000

NUCLEAR_Q = "What does the Outer Space Treaty say about nuclear weapons in orbit?"
LIABILITY_Q = "Who is liable for damage caused by a space object on the ground?"
LIABILITY_FOLLOW_UP = "What about liability for damage in outer space?"
IMG_PROBE = '<img src=x onerror="window.__xss=1">'
SCRIPT_PROBE = "<script>window.__xss=2</script>"


def _why_no_browser() -> str | None:
    if not CHROMIUM.exists():
        return (f"{CHROMIUM} is missing (install Debian's chromium; never `playwright install`); "
                "set SPACESEC_REQUIRE_BROWSER=1 to make this a failure")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"the playwright package is not installed ({exc}); set SPACESEC_REQUIRE_BROWSER=1 to fail instead"
    return None


NO_BROWSER = _why_no_browser()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(NO_BROWSER is not None and not REQUIRE_BROWSER, reason=str(NO_BROWSER)),
]


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per module (module scope: see tests/ui docs and TESTING.md)."""
    if NO_BROWSER:
        pytest.fail(f"SPACESEC_REQUIRE_BROWSER=1 but {NO_BROWSER}", pytrace=False)
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser, ui_server):
    """A fresh browser session (so a fresh conversation) on the app's page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto(ui_server.url)
    page.wait_for_selector("#question textarea")
    yield page
    context.close()


@pytest.fixture(scope="module")
def shots(artifacts_dir):
    def save(page, name: str) -> Path:
        path = artifacts_dir / name
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def ask(page, question: str, wait_for: str | None = None) -> None:
    """Type a question, click Ask, and wait for ``wait_for`` (or the status line to change)."""
    before = page.locator("#status").inner_text()
    page.fill("#question textarea", question)
    page.click("#ask")
    if wait_for:
        page.wait_for_selector(wait_for, timeout=ANSWER_TIMEOUT_MS)
    else:
        page.wait_for_function(
            "(before) => { const s = document.querySelector('#status');"
            " return s && s.innerText.trim() && s.innerText !== before; }",
            arg=before, timeout=ANSWER_TIMEOUT_MS)


def normalised(text: str) -> str:
    return " ".join(text.split())


def expect():
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def feedback_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------
def test_marker_link_scrolls_to_and_flashes_its_quoted_source(page, ui_engine, shots):
    quote = ui_engine.ask(NUCLEAR_Q).citations[0].quote  # same corpus and index as the server
    ask(page, NUCLEAR_Q, wait_for="#chat a[href='#src-1-1']")
    url = page.url
    page.click("#chat a[href='#src-1-1']")
    source = page.locator("#src-1-1")
    expect()(source).to_have_class(re.compile(r"(^|\s)flash(\s|$)"), timeout=1500)
    expect()(source).to_be_in_viewport()
    marks = source.locator(".passage mark")
    expect()(marks).to_have_count(1)
    assert normalised(marks.inner_text()) == normalised(quote)
    assert page.url == url  # handled in the page, no navigation
    assert "Answered with" in page.locator("#status").inner_text()
    shots(page, "answer.png")


def test_xss_probe_is_shown_as_text_and_never_runs(page, shots):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    question = f"Does the Outer Space Treaty ban nuclear weapons in orbit? {IMG_PROBE} {SCRIPT_PROBE}"
    ask(page, question)
    expect()(page.locator("#chat [data-testid='user']")).to_have_count(1)
    page.wait_for_timeout(500)  # give an injected onerror handler the time to fire
    assert page.evaluate("window.__xss") is None
    assert not dialogs
    chat_text = page.locator("#chat [data-testid='user']").inner_text()
    assert IMG_PROBE in chat_text and SCRIPT_PROBE in chat_text
    expect()(page.locator("#chat img[src='x']")).to_have_count(0)
    assert not page.evaluate("[...document.scripts].some(s => s.textContent.includes('__xss'))")
    sources_text = page.locator("#sources").inner_text()
    if "Sources for:" in sources_text or "Related passages" in sources_text:
        assert IMG_PROBE in sources_text  # the question in the Sources heading, as text
    expect()(page.locator("#sources img[src='x']")).to_have_count(0)
    shots(page, "xss.png")


def test_follow_up_answer_has_its_own_sources(page, shots):
    ask(page, LIABILITY_Q, wait_for="#chat a[href='#src-1-1']")
    ask(page, LIABILITY_FOLLOW_UP, wait_for="#chat a[href='#src-2-1']")
    expect()(page.locator("#chat [data-testid='bot']")).to_have_count(2)
    second_turn = page.locator("#sources section[data-turn='2']")
    expect()(second_turn.locator("h4")).to_contain_text(LIABILITY_FOLLOW_UP)
    expect()(second_turn.locator("#src-2-1")).to_be_visible()
    expect()(second_turn.locator("#src-2-1 b")).to_contain_text("Liability Convention (1972)")
    expect()(page.locator("#sources #src-1-1")).to_have_count(1)  # the first answer's markers still resolve
    page.click("#chat a[href='#src-2-1']")
    expect()(page.locator("#src-2-1")).to_have_class(re.compile(r"\bflash\b"), timeout=1500)
    shots(page, "followup.png")


def test_clear_chat_button_starts_a_new_conversation(page):
    ask(page, LIABILITY_Q, wait_for="#chat a[href='#src-1-1']")
    page.click("#clear")
    expect()(page.locator("#chat [data-testid='bot']")).to_have_count(0)
    expect()(page.locator("#sources .source")).to_have_count(0)
    ask(page, NUCLEAR_Q, wait_for="#chat a[href='#src-1-1']")
    expect()(page.locator("#sources section")).to_have_count(1)


def test_like_records_feedback_for_that_answer(page, ui_server):
    before = len(feedback_lines(ui_server.feedback_path))
    ask(page, NUCLEAR_Q, wait_for="#chat a[href='#src-1-1']")
    page.locator("#chat button[aria-label='Like']").last.click()
    expect()(page.locator("#status")).to_contain_text("feedback was recorded")
    lines = feedback_lines(ui_server.feedback_path)
    assert len(lines) == before + 1
    assert lines[-1]["question"] == NUCLEAR_Q and lines[-1]["vote"] == "up"
    assert lines[-1]["citations"]


def open_document(page, label: str) -> None:
    page.get_by_role("tab", name="Documents").click()
    page.locator("#doc-pick input").click()
    page.get_by_role("option", name=label, exact=True).click()


def test_documents_tab_shows_a_document_and_jumps_to_a_section(page, shots):
    open_document(page, "Outer Space Treaty (1967)")
    view = page.locator("#doc-view")
    article_iv = view.locator("#sec-outer-space-treaty-1967-article-iv-1")
    expect()(article_iv).to_be_attached(timeout=20_000)
    expect()(article_iv.locator("h4")).to_have_text("Article IV")
    expect()(view.locator("h3")).to_contain_text("Outer Space")
    assert view.locator(".doc-section").count() > 10
    page.locator("#section-pick input").click()
    options = page.get_by_role("option")
    expect()(options.first).to_be_visible()
    labels = [normalised(t) for t in options.all_inner_texts()]
    assert "Article IV" in labels and "Preamble" in labels
    page.get_by_role("option", name="Article XVII", exact=True).click()
    expect()(view.locator("#sec-outer-space-treaty-1967-article-xvii-1")).to_be_in_viewport()
    shots(page, "documents.png")


def test_chatbot_clear_icon_starts_a_new_conversation(page, ui_server):
    """The Chatbot's own trash button clears only the chat; the conversation must follow it
    (the next answer is turn 1 again, and Like rates that answer, not a cleared one)."""
    ask(page, LIABILITY_Q, wait_for="#chat a[href='#src-1-1']")
    page.locator("#chat button[aria-label='Clear']").click()
    expect()(page.locator("#chat [data-testid='bot']")).to_have_count(0)
    ask(page, NUCLEAR_Q, wait_for="#chat [data-testid='bot'] a")
    expect()(page.locator("#chat [data-testid='bot']")).to_have_count(1)
    before = len(feedback_lines(ui_server.feedback_path))
    page.locator("#chat button[aria-label='Like']").last.click()
    expect()(page.locator("#status")).to_contain_text("feedback was recorded")
    lines = feedback_lines(ui_server.feedback_path)
    assert len(lines) == before + 1
    assert lines[-1]["question"] == NUCLEAR_Q, f"recorded the cleared question: {lines[-1]['question']!r}"
    expect()(page.locator("#chat a[href='#src-1-1']")).to_have_count(1, timeout=2000)
    expect()(page.locator("#sources section")).to_have_count(1)
    expect()(page.locator("#sources section h4")).to_contain_text(NUCLEAR_Q)


# --------------------------------------------------------------------------------------
# Bugs found in the browser
# --------------------------------------------------------------------------------------
def test_first_document_can_be_opened(page):
    open_document(page, "LTS Guidelines (2019)")
    expect()(page.locator("#doc-view .doc-section").first).to_be_attached(timeout=5000)


def test_answers_are_copied_from_the_markdown_box_not_the_message(page):
    """A message's source holds link syntax for its markers, so the chat offers no per-message
    copy; the "Last answer as Markdown" box holds the clean text with its references."""
    ask(page, NUCLEAR_Q, wait_for="#chat a[href='#src-1-1']")
    assert page.locator("#chat button[aria-label='Copy message']").count() == 0
    page.get_by_text("Last answer as Markdown").click()
    box = page.locator("#answer-markdown textarea")
    expect()(box).to_have_value(re.compile("References:"), timeout=5000)
    value = box.input_value()
    assert "Outer Space Treaty (1967), Article IV" in value
    assert "\\" not in value and "](#src-" not in value
