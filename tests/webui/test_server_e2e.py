"""The running app (``spacesec serve`` in a subprocess), driven through gradio_client and HTTP."""

from __future__ import annotations

import ast
import html
import inspect
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from gradio_client import Client

from tests.webui.conftest import _log_tail, serving

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ASK_PARAMETERS = ["question", "chat", "doc_ids", "kinds", "years", "mode", "k"]
RESCUE_Q = "What does the Rescue Agreement say about space objects that land in another country?"
RESCUE_FOLLOW_UP = "Who pays the expenses of recovering them?"
ASTRONAUTS_Q = "What does the Rescue Agreement say about astronauts in distress?"
OFF_TOPIC_Q = "What is the capital of France?"


@pytest.fixture
def client(ui_server) -> Client:
    """A new client, i.e. a new browser session with its own conversation state."""
    return Client(ui_server.url, verbose=False)


def message_text(message: dict) -> str:
    """A chat message's text; gradio_client returns content as a list of parts."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def ask(client: Client, question: str, chat=None, doc_ids=(), kinds=(), years=(), mode="extractive", k=5):
    out = client.predict(question, list(chat or []), list(doc_ids), list(kinds), list(years), mode, k,
                         api_name="/ask")
    assert isinstance(out, tuple | list) and len(out) == 5
    return dict(zip(("chat", "sources", "status", "question", "markdown"), out))


def source_labels(sources_html: str, turn: int) -> list[str]:
    """The labels ("Liability Convention (1972), Article II") listed for one turn."""
    section = re.search(rf'<section class="[^"]*" data-turn="{turn}">(.*?)</section>', sources_html, re.DOTALL)
    assert section, f"no sources for turn {turn}"
    return [html.unescape(label) for label in re.findall(r"<b>(.*?)</b>", section.group(1))]


# --------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------
def test_ask_endpoint_signature(client):
    api = client.view_api(print_info=False, return_format="dict")
    endpoints = api["named_endpoints"]
    assert {"/ask", "/clear", "/export", "/document", "/search", "/search_excerpts", "/cited_answer"} <= set(endpoints)
    assert [p["parameter_name"] for p in endpoints["/ask"]["parameters"]] == ASK_PARAMETERS
    assert len(endpoints["/ask"]["returns"]) == 5  # the answers state stays on the server


def test_ask(client):
    out = ask(client, RESCUE_Q)
    chat = out["chat"]
    assert [m["role"] for m in chat] == ["user", "assistant"]
    assert isinstance(chat[1]["content"], list)  # parts, as documented in TESTING.md
    assert message_text(chat[0]) == RESCUE_Q
    assert "](#src-1-1)" in message_text(chat[1])
    assert 'id="src-1-1"' in out["sources"] and "<mark>" in out["sources"]
    assert out["status"].startswith("Answered with")
    assert out["question"] == ""
    assert "References:" in out["markdown"] and "Rescue Agreement (1968)" in out["markdown"]


def test_follow_up_with_the_returned_chat(client):
    first = ask(client, RESCUE_Q)
    second = ask(client, RESCUE_FOLLOW_UP, first["chat"])
    assert len(second["chat"]) == 4
    assert message_text(second["chat"][2]) == RESCUE_FOLLOW_UP
    assert "](#src-2-1)" in message_text(second["chat"][3])
    assert second["status"].startswith("Answered with"), second["status"]
    labels = source_labels(second["sources"], 2)
    assert labels and labels[0].startswith("Rescue Agreement (1968)")
    assert source_labels(second["sources"], 1)  # the first turn's sources are still there
    references = second["markdown"].split("References:")[1]
    assert "[1] Rescue Agreement (1968)" in references


def test_sessions_do_not_share_conversations(ui_server, client):
    alone = ask(Client(ui_server.url, verbose=False), OFF_TOPIC_Q)
    ask(client, RESCUE_Q)
    other = Client(ui_server.url, verbose=False)
    out = ask(other, OFF_TOPIC_Q)
    assert len(out["chat"]) == 2 and 'data-turn="2"' not in out["sources"]
    assert out["sources"] == alone["sources"] and out["chat"] == alone["chat"]


def test_abstention(client):
    out = ask(client, OFF_TOPIC_Q)
    assert "Not found" in out["status"]
    assert message_text(out["chat"][1]).startswith("**Not found in the corpus.**")
    assert "Related passages (not an answer)" in out["sources"]
    assert "<mark>" not in out["sources"]


def test_filter_by_document(client):
    out = ask(client, ASTRONAUTS_Q, doc_ids=["liability-convention-1972"])
    labels = source_labels(out["sources"], 1)
    assert labels and all(label.startswith("Liability Convention (1972)") for label in labels), labels
    assert "Rescue Agreement (1968)" not in out["sources"]


def test_filter_by_year_as_documented_by_the_api(client):
    api = client.view_api(print_info=False, return_format="dict")
    years = api["named_endpoints"]["/ask"]["parameters"][4]
    assert "Literal['1968'" in years["python_type"]["type"] or "'1968'" in years["python_type"]["type"]
    out = ask(client, "Who is liable for damage caused by a space object on the ground?", years=["1968"])
    labels = source_labels(out["sources"], 1)
    assert labels and all("(1968)" in label for label in labels), labels


def test_invalid_question_is_a_warning(client):
    first = ask(client, RESCUE_Q)
    out = ask(client, "x" * 2001, first["chat"])
    assert out["status"].startswith("⚠️") and "2,000" in out["status"]
    assert [message_text(m) for m in out["chat"]] == [message_text(m) for m in first["chat"]]
    assert out["question"] == "x" * 2001


def test_export_and_document_endpoints(client):
    ask(client, RESCUE_Q)
    button, status = client.predict(api_name="/export")
    assert status.startswith("Exported 1 answer(s)") and button["visible"] is True
    text = Path(button["value"]).read_text(encoding="utf-8")
    assert f"## 1. {RESCUE_Q}" in text and "References:" in text
    page, _sections = client.predict("outer-space-treaty-1967", api_name="/document")
    assert "Article IV" in page and 'id="sec-outer-space-treaty-1967-article-iv-1"' in page


# --------------------------------------------------------------------------------------
# What the server exposes
# --------------------------------------------------------------------------------------
def refused_paths(ui_server) -> list[str]:
    corpus = ui_server.paths.corpus_dir
    return [
        "/etc/passwd",
        "../../../../../../etc/passwd",
        str(corpus / "manifest.json"),
        "corpus/manifest.json",  # relative to the server's working directory
        str(ROOT / "corpus" / "manifest.json"),
        str(ui_server.paths.index_dir / "current" / "manifest.json"),
        str(ui_server.log_path),
        str(ROOT / "pyproject.toml"),
    ]


def test_file_route_refuses_files_outside_the_app(ui_server):
    base = ui_server.url.rstrip("/")
    with httpx.Client(timeout=10) as http:
        for path in refused_paths(ui_server):
            for url in (f"{base}/gradio_api/file={path}", f"{base}/gradio_api/file={quote(path, safe='')}",
                        f"{base}/file={path}"):
                response = http.get(url)
                assert response.status_code >= 400, f"{url} -> {response.status_code}"
                assert "root:" not in response.text and '"documents"' not in response.text


def test_server_listens_on_loopback_only(ui_server):
    tables = {name: Path(f"/proc/net/{name}") for name in ("tcp", "tcp6")}
    if not tables["tcp"].exists():
        pytest.skip("no /proc/net/tcp on this system")
    port = f"{ui_server.port:04X}"
    listening = []
    for name, table in tables.items():
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            address, local_port = fields[1].split(":")
            if local_port == port and fields[3] == "0A":  # 0A = LISTEN
                listening.append((name, address))
    assert listening == [("tcp", "0100007F")], listening  # 127.0.0.1, and nothing else


def test_serve_help_and_source_default_to_loopback_without_sharing():
    from rag.settings import Settings
    from ui import app

    help_text = subprocess.run([sys.executable, "-m", "rag.cli", "serve", "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=60, check=True).stdout
    assert "127.0.0.1" in help_text
    assert Settings.model_fields["host"].default == "127.0.0.1"

    tree = ast.parse(textwrap.dedent(inspect.getsource(app.serve)))
    launches = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute) and node.func.attr == "launch"]
    assert len(launches) == 1
    keywords = {kw.arg: kw.value for kw in launches[0].keywords}
    assert isinstance(keywords.get("share"), ast.Constant) and keywords["share"].value is False
    assert ast.unparse(keywords["server_name"]) == "host or settings.host"
    assert isinstance(keywords.get("show_error"), ast.Constant) and keywords["show_error"].value is False
    assert ast.unparse(keywords["allowed_paths"]) == "[]"


# --------------------------------------------------------------------------------------
# Uploads and other sites (issue 16): the app takes no files and no writes from other origins
# --------------------------------------------------------------------------------------
def gradio_temp_files(ui_server) -> list[Path]:
    folder = ui_server.log_path.parent / "gradio-tmp"
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.mark.parametrize("origin", [None, "http://evil.example"], ids=["no-origin", "evil-origin"])
def test_uploads_are_refused_and_nothing_is_stored(ui_server, origin):
    before = set(gradio_temp_files(ui_server))
    headers = {"Origin": origin} if origin else {}
    payload = b"A" * (10 * 1024 * 1024)
    with httpx.Client(timeout=30) as http:
        for path in ("/gradio_api/upload", "/gradio_api/upload/", "/upload"):
            response = http.post(ui_server.url.rstrip("/") + path, headers=headers,
                                 files={"files": ("big.txt", payload, "text/plain")})
            assert response.status_code == 403, (path, response.status_code, response.text[:200])
            assert "no file uploads" in response.text
    assert set(gradio_temp_files(ui_server)) == before


def test_writes_from_another_origin_are_refused(ui_server):
    base = ui_server.url.rstrip("/")
    body = {"data": ["Who is liable?", [], [], [], [], "extractive", 5], "fn_index": 0, "session_hash": "x1"}
    with httpx.Client(timeout=10) as http:
        refused = http.post(f"{base}/gradio_api/queue/join", json=body, headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403 and "other sites" in refused.text
        same = http.post(f"{base}/gradio_api/queue/join", json=body,
                         headers={"Origin": f"http://127.0.0.1:{ui_server.port}"})
        assert same.status_code == 200, same.text[:300]
        assert http.get(f"{base}/config", headers={"Origin": "http://evil.example"}).status_code == 200


def test_a_terminated_server_closes_and_removes_its_exported_files(ui_paths, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    with serving(ui_paths, tmp_path, env={"TMPDIR": str(scratch)}) as server:
        client = Client(server.url, verbose=False)
        ask(client, RESCUE_Q)
        _button, status = client.predict(api_name="/export")
        assert status.startswith("Exported 1 answer(s)")
        exports = list(scratch.glob("spacesec-export-*"))
        assert len(exports) == 1 and any(p.is_file() for p in exports[0].rglob("*.md"))
    # ``serving`` stopped it with SIGTERM, as a service manager does.
    assert server.process.returncode == 0, _log_tail(server.log_path)
    assert not exports[0].exists()
