"""A request body streamed into a private temporary folder under ``colorize photo``'s caps.

The first STREAM_HEAD_BYTES must hold an image header that claims at most ``max_pixels`` (the
same check as ``colorize photo -``), and the body may not exceed ``max_bytes``: both are enforced
while the bytes arrive, so garbage, bombs and floods stop early. The caller deletes the file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path

from colorize_core.images import ImageError
from colorize_core.inference.photo import STREAM_HEAD_BYTES, check_stream_head


class UploadError(Exception):
    """A refused upload: ``status`` is its HTTP status, ``str(error)`` a one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


@dataclass
class Upload:
    path: Path  # inside the private folder; the caller deletes it
    sha256: str  # of the bytes, hex
    size: int  # bytes


async def receive_upload(
    chunks: AsyncIterable[bytes], folder: Path, max_pixels: int, max_bytes: int, name: str = "upload"
) -> Upload:
    """Write ``chunks`` to a new file in ``folder``, checking the header and the size as they come.

    Raises
    ------
    UploadError
        400 for an empty body or one without a usable image header (one over ``max_pixels``
        included), 413 beyond ``max_bytes``; the partial file is deleted first.
    """
    digest = hashlib.sha256()
    head = bytearray()  # the first bytes, until the header is checked
    size = 0
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix="upload-")
    try:
        with os.fdopen(descriptor, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise UploadError(413, f"{name}: more than {max_bytes:,} bytes; refused")
                digest.update(chunk)
                out.write(chunk)
                if head is not None:
                    head += chunk
                    if len(head) >= STREAM_HEAD_BYTES:
                        check_stream_head(bytes(head[:STREAM_HEAD_BYTES]), max_pixels, name)
                        head = None
        if head is not None:
            check_stream_head(bytes(head), max_pixels, name)
    except ImageError as error:
        os.unlink(temporary)
        raise UploadError(400, str(error)) from None
    except BaseException:
        os.unlink(temporary)
        raise
    return Upload(Path(temporary), digest.hexdigest(), size)
