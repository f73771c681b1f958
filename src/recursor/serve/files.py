"""Uploaded contexts: ``POST /v1/files`` streamed to disk as it arrives, with a size cap.

The multipart body is parsed chunk by chunk (python-multipart's push parser) and the file
part written straight to its final place, so a gigabyte upload never sits in memory nor in
a temporary copy; past the cap the upload stops, its partial file is removed, and the client
gets 413. A file is ``<dir>/<id>`` plus ``<id>.json`` (its OpenAI file object).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from pathlib import Path
from typing import IO, Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from recursor.errors import RecursorError

_ID = re.compile(r"^file-[0-9a-f]{24}$")


class UploadError(RecursorError):
    """An upload refused: its HTTP status, a message and a code for the client."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class FileStore:
    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root

    def path(self, file_id: str) -> Path | None:
        """The stored file's path, or None (an id of the wrong shape is never a path)."""
        if not _ID.match(file_id):
            return None
        path = self.root / file_id
        return path if path.is_file() else None

    def info(self, file_id: str) -> dict[str, Any] | None:
        if self.path(file_id) is None:
            return None
        data: dict[str, Any] = json.loads((self.root / f"{file_id}.json").read_text("utf-8"))
        return data

    def delete(self, file_id: str) -> bool:
        if self.path(file_id) is None:
            return False
        (self.root / file_id).unlink(missing_ok=True)
        (self.root / f"{file_id}.json").unlink(missing_ok=True)
        return True

    async def receive(self, request: Request, cap: int) -> dict[str, Any]:
        """Store the ``file`` part of a multipart upload; the OpenAI file object."""
        ctype, params = parse_options_header(request.headers.get("content-type", ""))
        boundary = params.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise UploadError(400, "send multipart/form-data with a 'file' part", "bad_upload")
        file_id = "file-" + uuid.uuid4().hex[:24]
        dest = self.root / file_id
        upload = _Upload(dest, cap)
        parser = MultipartParser(boundary, upload.callbacks())
        try:
            async for chunk in request.stream():
                parser.write(chunk)
                if upload.too_big:
                    raise UploadError(413, f"file over the {cap:,}-byte upload cap", "too_large")
            parser.finalize()
            if upload.size is None:
                raise UploadError(400, "the upload has no 'file' part", "bad_upload")
        except BaseException:
            upload.discard()
            raise
        upload.close()
        info = {
            "id": file_id,
            "object": "file",
            "bytes": upload.size,
            "created_at": int(time.time()),
            "filename": upload.filename or "upload",
            "purpose": upload.fields.get("purpose", "user_data"),
            "status": "processed",
        }
        (self.root / f"{file_id}.json").write_text(json.dumps(info), "utf-8")
        return info


class _Upload:
    """The parser's callbacks: headers of each part, the file part's bytes to disk."""

    def __init__(self, dest: Path, cap: int) -> None:
        self.dest = dest
        self.cap = cap
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.size: int | None = None  # set when a file part began
        self.too_big = False
        self._out: IO[bytes] | None = None
        self._field: str | None = None
        self._value = bytearray()
        self._hname = b""
        self._hvalue = b""
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._hfield,
            "on_header_value": self._hval,
            "on_header_end": self._hend,
            "on_headers_finished": self._headers_done,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._headers, self._field, self._value = {}, None, bytearray()

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def _hval(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def _hend(self) -> None:
        self._headers[self._hname.lower()] = self._hvalue
        self._hname, self._hvalue = b"", b""

    def _headers_done(self) -> None:
        _disp, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name == "file" and self._out is None:
            # only the base name, and only for display: the stored name is the id
            raw = params.get(b"filename", b"upload").decode("utf-8", "replace")
            self.filename = raw.replace("\\", "/").rsplit("/", 1)[-1][:200]
            self._out = self.dest.open("wb")
            self.size = 0
        else:
            self._field = name

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._field is not None:
            if len(self._value) < 4096:  # a form field, not a file: small by nature
                self._value += data[start:end]
            return
        if self._out is None or self.size is None or self.too_big:
            return
        self.size += end - start
        if self.size > self.cap:
            self.too_big = True
            return
        self._out.write(data[start:end])

    def _end(self) -> None:
        if self._field is not None:
            self.fields[self._field] = self._value.decode("utf-8", "replace")
            self._field = None

    def close(self) -> None:
        if self._out is not None:
            self._out.close()

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(OSError):
            self.dest.unlink()
