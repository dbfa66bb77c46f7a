"""The Gradio app: chat with cited answers, a Sources panel, a Documents tab."""

from __future__ import annotations

import logging

import gradio as gr

from rag.briefing import presets
from rag.engine import Engine
from rag.settings import Settings
from ui.feedback import FeedbackLog
from ui.handlers import Handlers

log = logging.getLogger(__name__)

EXAMPLES = [
    "What does the Outer Space Treaty say about nuclear weapons in orbit?",
    "Which states met in Florence in 2024 and what did they commit to?",
    "Can a country claim the Moon?",
    "Who is liable for damage caused by a space object on the ground?",
    "What do the LTS guidelines say about space weather data?",
    "What did the United States commit to about anti-satellite missile tests?",
]

CSS = """
#sources { max-height: 640px; overflow-y: auto; }
.source { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 8px; margin: 6px 0; }
.source.flash { outline: 3px solid #f5a623; }
.source .score { color: var(--body-text-color-subdued); font-size: 0.85em; margin-left: 6px; }
.source .passage { white-space: pre-wrap; margin-top: 4px; }
.source mark { background: #fff3a3; color: #000; }
.answer-sources.related .source { border-style: dashed; }
.doc-section pre, .source pre { white-space: pre-wrap; font-family: inherit; }
"""

# Markers in answers link to "#src-<turn>-<n>"; scroll the Sources panel there and flash it.
HEAD = """
<script>
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest('a[href^="#src-"]');
  if (!link) return;
  event.preventDefault();
  event.stopPropagation();
  const target = document.getElementById(link.getAttribute("href").slice(1));
  if (!target) return;
  target.scrollIntoView({behavior: "instant", block: "center"});
  target.classList.add("flash");
  setTimeout(() => target.classList.remove("flash"), 2000);
}, true);
</script>
"""

SCROLL_TO_SECTION = """(anchor) => {
  if (anchor) {
    const el = document.getElementById("sec-" + anchor.toLowerCase().replace(/[^a-z0-9]+/g, "-"));
    if (el) el.scrollIntoView({behavior: "instant", block: "start"});
  }
  return anchor;
}"""


def build_app(engine: Engine, handlers: Handlers) -> gr.Blocks:
    corpus = engine.corpus
    doc_choices = [(f"{d.short_title} ({d.year})", d.doc_id) for d in corpus.documents]
    kinds = sorted({d.kind for d in corpus.documents})
    years = sorted({str(d.year) for d in corpus.documents})  # strings: what API clients send
    modes = ["extractive"] + (["llm"] if engine.llm_available else [])

    with gr.Blocks(title="Space-security assistant") as app:
        gr.Markdown("## Space-security assistant\nAnswers quote the corpus verbatim; every claim "
                    "carries a citation. If the corpus does not answer, it says so.")
        answers = gr.State([])
        with gr.Tab("Ask"):
            with gr.Row():
                with gr.Column(scale=3):
                    chat = gr.Chatbot(elem_id="chat", height=520, label="Conversation",
                                      feedback_options=["Like", "Dislike"],
                                      # Copying is done from "Last answer as Markdown": a message's
                                      # own source holds link syntax for its [n] markers.
                                      buttons=[])
                    question = gr.Textbox(elem_id="question", label="Your question", lines=2,
                                          max_lines=6, placeholder="Ask about the treaties, guidelines or statements")
                    with gr.Row():
                        ask_btn = gr.Button("Ask", variant="primary", elem_id="ask")
                        clear_btn = gr.Button("Clear chat", elem_id="clear")
                        export_btn = gr.Button("Export conversation", elem_id="export")
                    status = gr.Markdown(elem_id="status")
                    gr.Examples(EXAMPLES, inputs=question, label="Example questions")
                with gr.Column(scale=2):
                    sources = gr.HTML(handlers.sources([]), elem_id="sources", label="Sources")
            with gr.Accordion("Filters and options", open=False):
                doc_filter = gr.Dropdown(doc_choices, multiselect=True, label="Documents", elem_id="doc-filter")
                kind_filter = gr.CheckboxGroup(kinds, label="Kind", elem_id="kind-filter")
                year_filter = gr.CheckboxGroup(years, label="Year", elem_id="year-filter")
                mode = gr.Radio(modes, value="extractive", label="Answer mode", elem_id="mode")
                k = gr.Slider(1, 10, value=engine.settings.answer_passages, step=1, label="Passages considered")
            with gr.Accordion("Last answer as Markdown", open=False):
                markdown = gr.Textbox(label="Markdown with references", lines=8, buttons=["copy"],
                                      elem_id="answer-markdown")
            export_file = gr.File(label="Conversation briefing", visible=True, elem_id="export-file")

            inputs = [question, chat, answers, doc_filter, kind_filter, year_filter, mode, k]
            outputs = [chat, sources, status, answers, question, markdown]
            ask_btn.click(handlers.ask_stream, inputs, outputs, api_name="ask")
            question.submit(handlers.ask_stream, inputs, outputs, api_name=False)
            clear_btn.click(handlers.clear, None, outputs, api_name="clear")
            export_btn.click(handlers.export, answers, export_file, api_name="export")

            def on_like(state, data: gr.LikeData):
                return handlers.vote(state, data.index, data.liked)

            chat.like(on_like, answers, status, api_name=False)

        with gr.Tab("Briefing"):
            gr.Markdown("Build a cited onboarding briefing from a preset topic or your own questions.")
            with gr.Row():
                preset = gr.Dropdown(list(presets()), label="Preset topic", elem_id="brief-preset")
                custom = gr.Textbox(label="Or your own questions, one per line", lines=4,
                                    elem_id="brief-questions")
            brief_btn = gr.Button("Build briefing", variant="primary", elem_id="brief-build")
            brief_status = gr.Markdown(elem_id="brief-status")
            brief_files = gr.File(label="Download", file_count="multiple", elem_id="brief-files")
            brief_view = gr.HTML(elem_id="brief-preview")

            def build_briefing(preset_name, questions, progress=gr.Progress()):
                def report(done: int, total: int, current: str) -> None:
                    progress((done, total), desc=current)

                return handlers.briefing(preset_name, questions, report)

            brief_btn.click(build_briefing, [preset, custom], [brief_view, brief_files, brief_status],
                            api_name="briefing")

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

            doc_pick.change(open_document, doc_pick, [doc_view, section_pick], api_name="document")
            section_pick.change(None, section_pick, section_pick, js=SCROLL_TO_SECTION)
    return app


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Load the engine once and serve the app on ``host:port`` (loopback by default)."""
    import rag

    engine = rag.load(settings)
    app = build_app(engine, Handlers(engine, FeedbackLog(settings.feedback_path)))
    # 4 workers for everything else, beyond the model calls allowed at once.
    app.queue(default_concurrency_limit=4 + (settings.llm_max_concurrent if engine.llm_available else 0))
    app.launch(server_name=host or settings.host, server_port=port or settings.port, share=False,
               css=CSS, head=HEAD, footer_links=["api"], show_error=False, quiet=True,
               allowed_paths=[], ssr_mode=False)
