"""edgert.server: an OpenAI-compatible HTTP endpoint over the object layer (`edgert serve`).

Laid out as llama-cpp-python's server is: settings (what the command line sets), types (the
request bodies, validated with pydantic), slots (one shared Model, one Context + Session per
slot, the bounded queue) and app (the FastAPI routes, SSE streaming). Needs the optional extra:
pip install "edgert[server]". Importing this package does not import FastAPI; create_app does.
"""
from __future__ import annotations

from typing import Any

from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]


def create_app(settings: ServerSettings) -> Any:
    from .app import create_app as make
    return make(settings)
