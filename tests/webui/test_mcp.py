"""`spacesec serve --mcp`: the excerpt search and the cited answer as MCP tools, used through
the official `mcp` Python client against the served app on loopback."""

from __future__ import annotations

import pytest

from tests.webui.conftest import serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mcp_url(ui_engine, ui_paths, tmp_path_factory):
    with serving(ui_paths, tmp_path_factory.mktemp("mcp-server"), "--mcp") as server:
        yield server.url + "gradio_api/mcp/"


async def call(url: str, tool: str | None = None, **arguments):
    """(tools listed, the tool's text result or None)."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(url) as (read, write, _), ClientSession(read, write) as session:
        await session.initialize()
        tools = (await session.list_tools()).tools
        if tool is None:
            return tools, None
        result = await session.call_tool(tool, arguments)
        assert not result.isError, result
        return tools, "".join(part.text for part in result.content if part.type == "text")


async def test_only_the_two_documented_tools_are_listed(mcp_url):
    tools, _ = await call(mcp_url)
    by_name = {t.name: t for t in tools}
    assert set(by_name) == {"search_excerpts", "cited_answer"}
    search, answer = by_name["search_excerpts"], by_name["cited_answer"]
    assert "verbatim" in search.description and "formal citation" in search.description
    assert "NOT IN THE CORPUS" in answer.description and "References:" in answer.description
    assert {"query", "k", "documents", "kinds", "years"} <= set(search.inputSchema["properties"])
    assert "question" in answer.inputSchema["properties"]


async def test_search_excerpts_tool_returns_citations_and_verbatim_text(mcp_url, ui_engine):
    _, text = await call(mcp_url, "search_excerpts", query="nuclear weapons in orbit", k=2)
    first = text.split("\n\n")[0]
    assert first.startswith("[1] Outer Space Treaty (1967), art. IV(1)\n\u201cStates Parties to the Treaty")
    quoted = first.split("\n", 1)[1].strip("\u201c\u201d")
    assert quoted in ui_engine.corpus.text(ui_engine.corpus.get("outer-space-treaty-1967"))


async def test_cited_answer_tool_quotes_or_says_not_in_the_corpus(mcp_url):
    _, text = await call(mcp_url, "cited_answer",
                         question="Who is liable for damage caused by a space object on the ground?")
    assert "[1]" in text and "References:" in text and "Liability Convention (1972)" in text
    _, text = await call(mcp_url, "cited_answer", question="What is the capital of France?")
    assert text.startswith("NOT IN THE CORPUS:")


async def test_bad_input_is_a_sentence_not_an_error(mcp_url):
    _, text = await call(mcp_url, "search_excerpts", query="liability", documents=["no-such-doc"])
    assert text.startswith("Error: Unknown document 'no-such-doc'")


def test_the_web_app_still_answers_when_serving_mcp(mcp_url):
    """With --mcp the UI's own events leave the API docs (so the tool list), not the app."""
    from gradio_client import Client

    client = Client(mcp_url.removesuffix("gradio_api/mcp/"), verbose=False)
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {
        "/search_excerpts", "/cited_answer"}
    chat, _sources, status, _question, _markdown = client.predict(
        "Who is liable for damage caused by a space object on the ground?", [], [], [], [], "extractive", 5,
        api_name="/ask")
    assert status.startswith("Answered with") and len(chat) == 2
