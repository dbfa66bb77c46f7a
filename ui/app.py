"""The Gradio app: chat with cited answers and a Sources panel, excerpt search, briefings and
the documents; optionally an MCP server with the excerpt search and the cited answer."""

from __future__ import annotations

import logging
import signal

import gradio as gr
from starlette.middleware import Middleware

from rag.briefing import presets
from rag.engine import Engine
from rag.settings import Settings
from ui.feedback import FeedbackLog
from ui.guard import RequestGuard
from ui.handlers import Handlers
from ui.tools import make_tools

log = logging.getLogger(__name__)

EXAMPLES = [
    "What does the Outer Space Treaty say about nuclear weapons in orbit?",
    "Which states met in Florence in 2024 and what did they commit to?",
    "Can a country claim the Moon?",
    "Who is liable for damage caused by a space object on the ground?",
    "What do the LTS guidelines say about space weather data?",
    "What did the United States commit to about anti-satellite missile tests?",
]

# Fonts the machine already has, each with a real bold face: nothing is fetched, and bold text
# is never synthesised or pieced together from two fonts.
FONTS = ["system-ui", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "Noto Sans", "Liberation Sans",
         "DejaVu Sans", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "DejaVu Sans Mono",
              "monospace"]

CSS = """
#sources { max-height: calc(100vh - 120px); overflow-y: auto !important; overscroll-behavior: contain;
           position: sticky; top: 8px; padding-right: 4px; }
@media (max-width: 900px) { #sources { max-height: none; overflow: visible !important; position: static; } }
.source { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 8px; margin: 6px 0; }
.source.flash { outline: 3px solid #f5a623; }
.source .score { color: var(--body-text-color-subdued); font-size: 0.85em; margin-left: 6px; cursor: help; }
.passage { white-space: pre-wrap; margin-top: 4px; overflow-wrap: anywhere; }
.passage .heading { font-weight: 700; }
.source mark { background: #fff3a3; color: #000; }
.answer-sources h4 .turn { display: inline-block; font-size: 0.8em; padding: 0 6px; margin-right: 4px;
                           border-radius: 4px; background: var(--neutral-200); color: var(--neutral-800); }
.answer-sources.related .source { border-style: dashed; }
details.earlier > summary { cursor: pointer; margin: 8px 0; color: var(--body-text-color-subdued); }
.chips { display: flex; flex-wrap: wrap; gap: 6px; }
a.chip { font-size: 0.85em; text-decoration: none !important; padding: 1px 8px; border-radius: 12px;
         border: 1px solid var(--border-color-primary); background: var(--background-fill-secondary); }
.filters { font-size: 0.85em; color: var(--body-text-color-subdued); }
.strength { font-size: 0.8em; font-weight: 700; padding: 1px 6px; border-radius: 4px; cursor: help;
            background: #fde8c8; color: #7a4100; }
#chat .thought-group .content { opacity: 0.55; }  /* an LLM draft, not yet checked */
.copy-citation { margin-top: 6px; font-size: 0.85em; padding: 2px 10px; border-radius: 4px; cursor: pointer;
                 border: 1px solid var(--border-color-primary); background: var(--background-fill-secondary); }
.doc-meta a { overflow-wrap: anywhere; }
@media (max-width: 600px) {  /* phones: answers use the whole width */
  #chat .message-row.bubble { max-width: calc(100% - 8px) !important; }
  a.chip { font-size: 0.8em; }
}
"""

# Markers and chips link to "#src-<turn>-<n>": unfold earlier answers' sources if needed,
# scroll the card into view and flash it. Enter sends a question, Shift+Enter starts a line.
# Number boxes keep to their range while typing. "Copy citation" copies its data-copy text.
HEAD = """
<script>
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest('a[href^="#src-"]');
  if (!link) return;
  event.preventDefault();
  event.stopPropagation();
  const anchor = document.getElementById(link.getAttribute("href").slice(1));
  if (!anchor) return;
  const target = anchor.closest(".source") || anchor;  // a passage quoted twice has one card
  for (let el = target.parentElement; el; el = el.parentElement) {
    if (el.tagName === "DETAILS") el.open = true;
  }
  target.scrollIntoView({behavior: "instant", block: "center"});
  target.classList.add("flash");
  setTimeout(() => target.classList.remove("flash"), 2000);
}, true);
const SENDS = {"question": "#ask", "search-query": "#search-run"};
const sendBox = (event) => event.key === "Enter" && !event.isComposing && event.target.closest
  && event.target.closest("#question textarea, #search-query textarea");
document.addEventListener("keypress", (event) => {
  if (sendBox(event)) event.stopPropagation();  // Gradio's own handler sends on Shift+Enter
}, true);
document.addEventListener("keydown", (event) => {
  const box = sendBox(event);
  if (!box) return;
  event.stopPropagation();
  if (event.shiftKey) return;  // the browser inserts the line break
  event.preventDefault();
  const button = document.querySelector(SENDS[box.closest("#question, #search-query").id]);
  if (button) button.click();
}, true);
document.addEventListener("input", (event) => {
  const box = event.target;
  if (!(box instanceof HTMLInputElement) || box.type !== "number" || box.value === "") return;
  const low = parseFloat(box.min), high = parseFloat(box.max), value = parseFloat(box.value);
  if (value < low || value > high) {
    box.value = String(Math.min(Math.max(value, low), high));
    box.dispatchEvent(new Event("input", {bubbles: true}));
  }
}, true);
document.addEventListener("click", async (event) => {
  const button = event.target.closest && event.target.closest("button.copy-citation");
  if (!button) return;
  const text = button.dataset.copy;
  try { await navigator.clipboard.writeText(text); }
  catch (err) {
    const area = Object.assign(document.createElement("textarea"), {value: text});
    document.body.append(area); area.select(); document.execCommand("copy"); area.remove();
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy citation"; }, 1500);
});
</script>
"""

SCROLL_TO_SECTION = """(anchor) => {
  if (anchor) {
    const el = document.getElementById("sec-" + anchor.toLowerCase().replace(/[^a-z0-9]+/g, "-"));
    if (el) el.scrollIntoView({behavior: "instant", block: "start"});
  }
  return anchor;
}"""


def build_app(engine: Engine, handlers: Handlers, mcp: bool = False) -> gr.Blocks:
    """The app. With ``mcp`` the UI's own events are left out of the API docs (and so out of
    the MCP tool list), which then shows only ``search_excerpts`` and ``cited_answer``."""
    corpus = engine.corpus
    doc_choices = [(d.citation_name, d.doc_id) for d in corpus.documents]
    kinds = sorted({d.kind for d in corpus.documents})
    years = sorted({str(d.year) for d in corpus.documents})  # strings: what API clients send
    modes = ["extractive"] + (["llm"] if engine.llm_available else [])
    ui_api = "undocumented" if mcp else "public"

    with gr.Blocks(title="Space-security assistant") as app:
        gr.Markdown("## Space-security assistant\nAnswers quote the corpus verbatim; every claim "
                    "carries a citation. If the corpus does not answer, it says so.")
        answers = gr.State([])
        with gr.Tab("Ask"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=3, min_width=340):
                    chat = gr.Chatbot(elem_id="chat", height=520, label="Conversation",
                                      feedback_options=["Like", "Dislike"],
                                      # Copying is done from "Last answer as Markdown": a message's
                                      # own source holds link syntax for its [n] markers.
                                      buttons=[])
                    question = gr.Textbox(elem_id="question", label="Your question", lines=2, max_lines=6,
                                          info="Enter sends; Shift+Enter starts a new line.",
                                          placeholder="Ask about the treaties, guidelines or statements")
                    with gr.Row():
                        ask_btn = gr.Button("Ask", variant="primary", elem_id="ask")
                        clear_btn = gr.Button("Clear chat", elem_id="clear")
                        export_btn = gr.Button("Export conversation", elem_id="export")
                    download = gr.DownloadButton("Download conversation (.md)", visible=False,
                                                 elem_id="download")
                    status = gr.Markdown(elem_id="status")
                    gr.Examples(EXAMPLES, inputs=question, label="Example questions")
                with gr.Column(scale=2, min_width=340):
                    sources = gr.HTML(handlers.sources([]), elem_id="sources", label="Sources")
            with gr.Accordion("Filters and options", open=False, elem_id="filters"):
                doc_filter = gr.Dropdown(doc_choices, multiselect=True, label="Documents", elem_id="doc-filter")
                kind_filter = gr.CheckboxGroup(kinds, label="Kind", elem_id="kind-filter")
                year_filter = gr.CheckboxGroup(years, label="Year", elem_id="year-filter")
                # A choice of one is no choice: shown only when a chat model is configured.
                mode = gr.Radio(modes, value="extractive", label="Answer mode", elem_id="mode",
                                visible=len(modes) > 1)
                k = gr.Slider(1, 10, value=engine.settings.answer_passages, step=1, label="Passages considered",
                              elem_id="passages")
            with gr.Accordion("Last answer as Markdown", open=False, elem_id="markdown-box"):
                markdown = gr.Textbox(label="Markdown with references", lines=8, buttons=["copy"],
                                      elem_id="answer-markdown")

            inputs = [question, chat, answers, doc_filter, kind_filter, year_filter, mode, k]
            outputs = [chat, sources, status, answers, question, markdown]
            # "once": clicks and Enters while an answer is on its way are ignored.
            ask_btn.click(handlers.ask_stream, inputs, outputs, api_name="ask", trigger_mode="once",
                          api_visibility=ui_api)
            clear_btn.click(handlers.clear, None, outputs + [download], api_name="clear", api_visibility=ui_api)
            chat.clear(handlers.clear_chat, None, [chat, sources, status, answers, markdown, download], api_name=False)
            def export(state):
                path, message = handlers.export(state)
                return gr.DownloadButton(value=path, visible=path is not None), message

            export_btn.click(export, answers, [download, status], api_name="export", api_visibility=ui_api)

            def on_like(state, data: gr.LikeData):
                return handlers.vote(state, data.index, data.liked)

            chat.like(on_like, answers, status, api_name=False)

        with gr.Tab("Search"):
            gr.Markdown("Find verbatim excerpts: ranked paragraphs with the matching words highlighted "
                        "and a formal citation to copy. No answer is composed.")
            with gr.Row():
                search_query = gr.Textbox(label="Search the corpus", lines=1, max_lines=3, scale=4,
                                          elem_id="search-query", placeholder="e.g. nuclear weapons in orbit")
                search_btn = gr.Button("Search", variant="primary", elem_id="search-run", scale=1)
            with gr.Accordion("Filters", open=False, elem_id="search-filters"):
                search_docs = gr.Dropdown(doc_choices, multiselect=True, label="Documents", elem_id="search-doc")
                search_kinds = gr.CheckboxGroup(kinds, label="Kind", elem_id="search-kind")
                search_years = gr.CheckboxGroup(years, label="Year", elem_id="search-year")
                search_k = gr.Slider(1, 20, value=8, step=1, label="Excerpts", elem_id="search-k")
            search_status = gr.Markdown(elem_id="search-status")
            search_results = gr.HTML(elem_id="search-results")
            search_btn.click(handlers.search, [search_query, search_docs, search_kinds, search_years, search_k],
                             [search_results, search_status], api_name="search", api_visibility=ui_api)

        with gr.Tab("Briefing"):
            gr.Markdown("Build a cited onboarding briefing from a preset topic or your own questions.")
            with gr.Row():
                # min_width: on a phone the two stack instead of squeezing side by side
                preset = gr.Dropdown(list(presets()), label="Preset topic", elem_id="brief-preset", min_width=300)
                custom = gr.Textbox(label="Or your own questions, one per line", lines=4,
                                    elem_id="brief-questions", min_width=300)
            brief_btn = gr.Button("Build briefing", variant="primary", elem_id="brief-build")
            brief_status = gr.Markdown(elem_id="brief-status")
            brief_files = gr.File(label="Download", file_count="multiple", elem_id="brief-files",
                                  interactive=False, visible=False)
            brief_view = gr.HTML(elem_id="brief-preview")

            def build_briefing(preset_name, questions, progress=gr.Progress()):  # noqa: B008 - Gradio's idiom
                def report(done: int, total: int, current: str) -> None:
                    progress((done, total), desc=current)

                view, files, message = handlers.briefing(preset_name, questions, report)
                return view, gr.File(value=files or None, visible=bool(files)), message

            brief_btn.click(build_briefing, [preset, custom], [brief_view, brief_files, brief_status],
                            api_name="briefing", api_visibility=ui_api)

        with gr.Tab("Documents"):
            first_page, first_sections = handlers.document(doc_choices[0][1])
            with gr.Row():
                doc_pick = gr.Dropdown(doc_choices, value=doc_choices[0][1], label="Document", elem_id="doc-pick")
                section_pick = gr.Dropdown(first_sections, value=None, label="Jump to section",
                                           elem_id="section-pick")
            doc_view = gr.HTML(first_page, elem_id="doc-view")

            def open_document(doc_id):
                page, choices = handlers.document(doc_id)
                return page, gr.Dropdown(choices=choices, value=None)

            doc_pick.change(open_document, doc_pick, [doc_view, section_pick], api_name="document",
                            api_visibility=ui_api)
            section_pick.change(None, section_pick, section_pick, js=SCROLL_TO_SECTION)

        for tool in make_tools(engine, handlers.excerpts):
            gr.api(tool, api_name=tool.__name__)
    return app


def serve(settings: Settings, host: str | None = None, port: int | None = None, mcp: bool = False) -> None:
    """Load the engine once and serve the app on ``host:port`` (loopback by default); with
    ``mcp``, also as an MCP server at /gradio_api/mcp/."""
    import rag

    engine = rag.load(settings)
    app = build_app(engine, Handlers(engine, FeedbackLog(settings.feedback_path)), mcp)
    # 4 workers for everything else, beyond the model calls allowed at once.
    app.queue(default_concurrency_limit=4 + (settings.llm_max_concurrent if engine.llm_available else 0))
    theme = gr.themes.Default(font=FONTS, font_mono=MONO_FONTS)
    # RequestGuard refuses every upload and cross-site write; the 1 kB cap is a second lock
    # should Gradio add an upload route the guard does not know.
    app.launch(server_name=host or settings.host, server_port=port or settings.port, share=False,
               theme=theme, css=CSS, head=HEAD, footer_links=["api"], show_error=False, quiet=True,
               allowed_paths=[], ssr_mode=False, mcp_server=mcp, max_file_size="1kb",
               app_kwargs={"middleware": [Middleware(RequestGuard)]}, prevent_thread_lock=True)
    # Gradio is quiet: say once, when it is ready, where the app is.
    print(f"The app is ready at {app.local_url}" + (f" (MCP: {app.local_url}gradio_api/mcp/)" if mcp else "")
          + "; press Ctrl+C to stop it.", flush=True)
    # Stopped by a service manager (SIGTERM) as by Ctrl+C: the server closes and the exported
    # briefings' folder is removed, instead of the process dying where it stands.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    app.block_thread()
