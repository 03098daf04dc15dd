"""The `jaxprune` command line. Each command lives in its own module with a `register(subparsers)`
function; nothing in the library imports this package."""

from __future__ import annotations

from ._main import build_parser as build_parser, main as main

__all__ = ["build_parser", "main"]
