"""The Gradio web app: a thin shell over the ``rag`` library."""
