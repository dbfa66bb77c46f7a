"""Tests of the Gradio web app (``ui/``): rendering, handlers, a served app, a real browser."""
