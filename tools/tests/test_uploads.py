"""Uploads are stored and read a piece at a time: the file read back is byte for byte the one
sent, seeks and reads across pieces like a disk file (ZipFile, pypdf, PyAV and ijson use it
so), and a piece gone is a clear 410, never a silent truncation."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tools import uploads
from tools.base import ToolError
from tools.models import Job, UploadChunk

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Job]:
    """A job whose upload holds `data`, stored in pieces of `chunk_bytes`."""

    def store(data: bytes, chunk_bytes: int = 1000) -> Job:
        path = tmp_path / "upload.bin"
        path.write_bytes(data)
        job = Job.objects.create(tool="import-chats", params={"upload": True})
        monkeypatch.setattr(uploads, "CHUNK_BYTES", chunk_bytes)
        uploads.store_upload(job=job, path=path)
        return job

    return store


def test_the_file_reads_back_whole_in_pieces_and_seeks(stored: Callable[..., Job]) -> None:
    data = os.urandom(4321)
    job = stored(data)
    assert list(UploadChunk.objects.order_by("index").values_list("index", flat=True)) == [0, 1, 2, 3, 4]
    with uploads.open_upload(job) as file:
        assert file.read() == data
        assert file.seek(0, io.SEEK_END) == 4321 and file.read(10) == b""
        file.seek(995)
        assert file.read(10) == data[995:1005]  # across a piece's end
        assert file.tell() == 1005
        file.seek(-21, io.SEEK_END)
        assert file.read() == data[-21:]
        with pytest.raises((ValueError, OSError)):
            file.seek(-1)


def test_a_zip_is_read_from_the_pieces(stored: Callable[..., Job]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("a.json", b'{"x": 1}')
        archive.writestr("b.bin", os.urandom(5000))
    job = stored(buffer.getvalue(), chunk_bytes=777)
    with uploads.open_upload(job) as file, zipfile.ZipFile(file) as archive:
        assert archive.read("a.json") == b'{"x": 1}'
        assert archive.testzip() is None


def test_a_missing_piece_is_a_410(stored: Callable[..., Job]) -> None:
    job = stored(os.urandom(2500))
    UploadChunk.objects.filter(index=1).delete()
    with uploads.open_upload(job) as file:
        assert len(file.read(1000)) == 1000
        with pytest.raises(ToolError) as refused:
            file.read()
    assert refused.value.status == 410
    UploadChunk.objects.all().delete()
    job.upload.delete()
    with pytest.raises(ToolError):
        uploads.open_upload(job)
