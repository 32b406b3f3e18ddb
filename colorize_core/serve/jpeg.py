"""A JPEG encoded on every core: horizontal bands encoded at once, joined by restart markers.

Pillow's JPEG encoder holds the GIL, and encoding is a third of what a temperature change costs
the page (about 1.9 ms for a 1024×768 photo). simplejpeg (libjpeg-turbo) releases it, so the
photo is cut into one band per core, each a whole number of MCU rows, encoded at once
(:mod:`colorize_core.inference.bands`) and joined into one baseline JPEG: the first band's
headers with the full height, a restart interval of one band's MCUs (DRI), and the bands'
entropy-coded data separated by RST markers. A decoder resets its DC predictions at each marker,
as each band's encoder started from zero, and every band saw only its own MCUs, so the joined
file decodes to exactly the pixels of the whole photo encoded at once (tests/test_serve.py).
"""

from __future__ import annotations

import struct

import numpy as np
import simplejpeg

from colorize_core.device import available_cores
from colorize_core.inference.bands import run_in_bands

#: Pillow's subsampling names -> simplejpeg's, with the MCU's height in pixels.
SUBSAMPLING = {"4:4:4": ("444", 8), "4:2:0": ("420", 16)}
#: A restart interval counts MCUs in 16 bits.
MAX_RESTART_INTERVAL = 0xFFFF
#: Bytes of an ICC profile per APP2 marker, after its 14-byte header (as Pillow writes them).
ICC_CHUNK = 65533 - 14

SOI, EOI, SOF0, SOS, DRI = b"\xff\xd8", b"\xff\xd9", 0xC0, 0xDA, b"\xff\xdd"


def encode_jpeg(
    pixels: np.ndarray,
    quality: int,
    subsampling: str,
    exif: bytes | None = None,
    icc_profile: bytes | None = None,
    bands: int | None = None,
) -> bytes:
    """A baseline JPEG of (H, W, 3) uint8 RGB pixels, in ``bands`` bands encoded at once (None: one
    per core; 1: as simplejpeg alone writes it).

    ``subsampling`` is Pillow's name ("4:4:4", "4:2:0"); ``exif`` (starting with ``Exif\\0\\0``, as
    ``Image.Exif.tobytes`` gives) and ``icc_profile`` go into APP1 and APP2 markers as Pillow
    writes them.
    """
    height, width, _ = pixels.shape
    chroma, mcu = SUBSAMPLING[subsampling]
    mcu_rows, mcus_per_row = -(-height // mcu), -(-width // mcu)
    bands = min(bands or available_cores(), mcu_rows)
    rows_per_band = -(-mcu_rows // bands)  # MCU rows; the last band may have fewer
    if rows_per_band * mcus_per_row > MAX_RESTART_INTERVAL:
        rows_per_band = max(1, MAX_RESTART_INTERVAL // mcus_per_row)
    band_height = rows_per_band * mcu
    tops = range(0, height, band_height)
    pixels = np.ascontiguousarray(pixels)
    parts = run_in_bands(
        lambda band: simplejpeg.encode_jpeg(pixels[tops[band] : tops[band] + band_height], quality, "RGB", chroma),
        len(tops),
    )
    headers, first_scan = _split(parts[0])
    headers = _with_height(headers, height)
    if len(parts) > 1:  # the restart interval goes before the scan
        headers += DRI + struct.pack(">HH", 4, rows_per_band * mcus_per_row)
    scans = [first_scan] + [_split(part)[1] for part in parts[1:]]
    body = bytearray(_metadata(headers, exif, icc_profile))
    body += scans[0]
    for k, scan in enumerate(scans[1:]):
        body += bytes((0xFF, 0xD0 + k % 8)) + _entropy_data(scan)
    return bytes(body) + EOI


def _segments(data: bytes):
    """(marker, start, end) of each marker segment from SOI to the SOS header (inclusive)."""
    position = 2  # after SOI
    while True:
        marker = data[position + 1]
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        yield marker, position, position + 2 + length
        if marker == SOS:
            return
        position += 2 + length


def _split(jpeg: bytes) -> tuple[bytes, bytes]:
    """(everything before the SOS segment, the SOS segment and the entropy-coded data up to EOI)."""
    if not jpeg.startswith(SOI) or not jpeg.endswith(EOI):
        raise ValueError("not a whole JPEG stream")
    *_, (_, start, _) = _segments(jpeg)  # the last segment is SOS
    return jpeg[:start], jpeg[start:-2]


def _entropy_data(scan: bytes) -> bytes:
    """A scan without its SOS header."""
    (length,) = struct.unpack(">H", scan[2:4])
    return scan[2 + length :]


def _with_height(headers: bytes, height: int) -> bytes:
    """The headers with the frame's (SOF0's) height set to ``height``."""
    for marker, start, _ in _segments(headers + b"\xff\xda\x00\x02"):
        if marker == SOF0:  # FF C0, length (2), precision (1), height (2), width (2), ...
            return headers[: start + 5] + struct.pack(">H", height) + headers[start + 7 :]
    raise ValueError("no baseline frame header (SOF0)")


def _metadata(headers: bytes, exif: bytes | None, icc_profile: bytes | None) -> bytes:
    """The headers with APP1 (EXIF) and APP2 (ICC) markers after SOI and the JFIF APP0, if any."""
    markers = b""
    if exif:
        markers += b"\xff\xe1" + struct.pack(">H", 2 + len(exif)) + exif
    if icc_profile:
        chunks = [icc_profile[i : i + ICC_CHUNK] for i in range(0, len(icc_profile), ICC_CHUNK)]
        for number, chunk in enumerate(chunks, 1):
            markers += b"\xff\xe2" + struct.pack(">H", 2 + 14 + len(chunk)) + b"ICC_PROFILE\0"
            markers += bytes((number, len(chunks))) + chunk
    position = 2
    if headers[2:4] == b"\xff\xe0":  # JFIF APP0 stays first
        position = 4 + struct.unpack(">H", headers[4:6])[0]
    return headers[:position] + markers + headers[position:]
