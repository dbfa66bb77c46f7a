"""Command-line entry points of the web app, kept light: gradio is imported only to serve."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``spacesec serve`` to the command line."""
    parser = subparsers.add_parser("serve", help="start the web app (127.0.0.1:7860 by default)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 7860)")
    parser.add_argument("--mcp", action="store_true",
                        help="also serve the excerpt search and the cited answer as MCP tools "
                             "(at /gradio_api/mcp/)")

    def run(args: argparse.Namespace) -> int:
        from rag.cli import settings_from
        from ui.app import serve

        serve(settings_from(args), args.host, args.port, args.mcp)
        return 0

    parser.set_defaults(func=run)
