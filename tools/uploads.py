"""Uploads stored in pieces and read back as a seekable file: a job's file is written to the
database a piece (CHUNK_BYTES) at a time and read a piece at a time, so neither the web
process nor a worker holds a 100 MB import whole (ZipFile, pypdf, PyAV and ijson all read
through `open_upload`'s file)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .base import ToolError
from .models import Job, Upload, UploadChunk

CHUNK_BYTES = 1024 * 1024
READ_BUFFER = 64 * 1024


def store_upload(*, job: Job, path: Path) -> Upload:
    """The file at `path`, as the job's upload (the caller's transaction)."""
    upload = Upload.objects.create(job=job, size=path.stat().st_size, chunk_bytes=CHUNK_BYTES)
    with path.open("rb") as file:
        for index, piece in enumerate(iter(lambda: file.read(CHUNK_BYTES), b"")):
            UploadChunk.objects.create(upload=upload, index=index, data=piece)
    return upload


class StoredUpload(io.RawIOBase):
    """An upload's bytes, fetched a piece at a time as they are read (one piece in memory)."""

    def __init__(self, upload: Upload) -> None:
        super().__init__()
        self.upload_id = upload.pk
        self.size = upload.size
        self.chunk_bytes = upload.chunk_bytes
        self.position = 0
        self.piece: bytes = b""
        self.piece_index = -1

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.position = base + offset
        return self.position

    def readinto(self, buffer: Any) -> int:
        if self.position >= self.size:
            return 0
        index, within = divmod(self.position, self.chunk_bytes)
        piece = self._piece(index)
        count = min(len(buffer), len(piece) - within)
        buffer[:count] = piece[within : within + count]
        self.position += count
        return count

    def _piece(self, index: int) -> bytes:
        if index != self.piece_index:
            rows = UploadChunk.objects.filter(upload_id=self.upload_id, index=index).values_list("data", flat=True)
            data = rows.first()
            if data is None:
                raise ToolError("The uploaded file is gone; upload it again.", status=410, code="upload_gone")
            self.piece, self.piece_index = bytes(data), index  # bytes (SQLite) or a memoryview (PostgreSQL)
        return self.piece


def open_upload(job: Job) -> io.BufferedReader:
    upload = Upload.objects.filter(job_id=job.pk).first()
    if upload is None:
        raise ToolError("The uploaded file is gone; upload it again.", status=410, code="upload_gone")
    return io.BufferedReader(StoredUpload(upload), buffer_size=READ_BUFFER)
