"""The import tool: an uploaded export becomes the person's chats (chat.web.importer), in a
worker, with progress; a file it cannot read is a 400 naming the first bad field, and then
nothing was imported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chat.web.importer import ImportRefused, import_chats, readable

from .base import Progress, ToolError, register


class ImportChats:
    name = "import-chats"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        path = Path(str(params.get("path") or ""))
        with path.open("rb") as file:
            head = file.read(64)
        if not readable(head):
            raise ToolError(
                "Not an export this server reads: a GhostGPT ZIP or JSON, ChatGPT's conversations.json, "
                "or Open WebUI's or LibreChat's JSON export.",
                status=415,
                code="unsupported_file",
            )
        return {"path": str(path), "account_id": int(params["account_id"]), "owner_id": params.get("owner_id")}

    def run(self, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        try:
            return import_chats(
                params["file"], account_id=params["account_id"], owner_id=params["owner_id"], progress=progress
            )
        except ImportRefused as exc:
            raise ToolError(exc.message, status=400, code="invalid_import") from None


register(ImportChats())
