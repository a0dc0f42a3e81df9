"""The one Tool shape: validate input -> run -> typed result, or a ToolError.

HTTP views and Celery tasks both go through `registry`; a tool never knows which called it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

Progress = Callable[[int], None]


class ToolError(Exception):
    """A failure with a message fit for users, an HTTP status, and whether a retry could help."""

    def __init__(self, message: str, *, status: int = 400, code: str = "invalid_input", retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retryable = retryable

    def as_dict(self) -> dict[str, Any]:
        error_type = {500: "server_error", 502: "upstream_error", 504: "upstream_error"}.get(
            self.status, "invalid_request_error"
        )
        return {
            "message": self.message,
            "type": error_type,
            "code": self.code,
            "status": self.status,
            "retryable": self.retryable,
        }


class Tool(Protocol):
    name: str

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Clean parameters, or ToolError(400/413/415). Runs in the web process: keep it cheap."""
        ...

    def run(self, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """Do the work (in a worker); report 0-100 through `progress`; return the JSON result."""
        ...


registry: dict[str, Tool] = {}


def register(tool: Tool) -> Tool:
    registry[tool.name] = tool
    return tool


def get_tool(name: str) -> Tool:
    # Import the tool modules so they register themselves.
    from documents import indexing  # noqa: F401

    from . import fetch_url, import_chats, pdf, transcribe  # noqa: F401
    from .research import tool  # noqa: F401

    return registry[name]
