"""The FastAPI application of ``colorize serve``: the page, and the HTTP API it uses.

    POST /colorize?T=0.7&format=png        body: the image's bytes      -> the colour image
    GET  /colorize/{id}?T=0.3&format=jpg   re-decoded from the cache     -> the colour image
         (&preview=true: at most PREVIEW_SIDE pixels on its long side, for the moving slider;
          &download=true: as an attachment, a JPEG with full-resolution chroma as colorize photo's)
    GET  /colorize/{id}/gray               the lightness the network saw -> PNG
    GET  /api/model, /api/status           JSON: the model and its card; network passes and cache
    GET  /openapi.json                     the API's OpenAPI description

A POST runs the network once (one request at a time, in a worker thread) and caches the photo's
log-probabilities under the SHA-256 of its bytes (the ``X-Image-Id`` header), so a new T, or the
same photo posted again, is a re-decode without the network. Every refusal is a 4xx whose JSON
``detail`` is one line.

JPEGs shown on the page carry their chroma at half resolution (4:2:0), which takes a third less
time to encode: the colour comes from a prediction at a quarter of the resolution, so nothing of
it is lost. They are encoded in bands on every core (:mod:`colorize_core.serve.jpeg`). Downloads
are encoded as ``colorize photo`` writes them (Pillow, 4:4:4, quality 95).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool

from colorize_core.config import TEMPERATURE
from colorize_core.constants import DEFAULT_CACHE_MIB, DEFAULT_CACHE_SECONDS, DEFAULT_MAX_PIXELS
from colorize_core.images import ImageError
from colorize_core.inference.colorizer import Colorizer
from colorize_core.inference.photo import (
    FORMATS,
    JPEG_MAX_SIDE,
    JPEG_QUALITY,
    JPEG_SUBSAMPLING,
    MAX_STREAM_BYTES,
    encode,
    exif_with_marker,
)
from colorize_core.serve.cache import PredictionCache
from colorize_core.serve.jpeg import encode_jpeg
from colorize_core.serve.model_info import describe_model
from colorize_core.serve.prediction import PREVIEW_SIDE, Prediction, predict, render, render_gray
from colorize_core.serve.upload import UploadError, receive_upload

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: Image ids are the first hex digits of the upload's SHA-256.
ID_LENGTH = 32
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}
IMAGE_RESPONSE = {200: {"content": {"image/png": {}, "image/jpeg": {}}, "description": "the colour image"}}
Format = Literal["png", "jpg"]
#: Chroma subsampling of the JPEGs that the page shows (see the module's docstring).
DISPLAY_JPEG_SUBSAMPLING = "4:2:0"
FORMAT_HELP = "png, or jpg (4:2:0 chroma for display; 4:4:4 with download=true)"


@dataclass(frozen=True)
class ServeSettings:
    max_pixels: int = DEFAULT_MAX_PIXELS  # uploads whose header claims more are refused unread
    max_upload_bytes: int = MAX_STREAM_BYTES  # and bodies longer than this, while they stream
    cache_bytes: int = DEFAULT_CACHE_MIB << 20  # log-probabilities and lightness kept for the slider
    cache_seconds: float = DEFAULT_CACHE_SECONDS  # after a photo's last use


class Refusal(Exception):
    """A request answered with ``status`` and a one-line ``detail``."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status


def one_line_validation(error: RequestValidationError) -> str:
    """FastAPI's list of validation errors as one line: ``T: Input should be a valid number``."""
    parts = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()) if part not in ("query", "path", "body"))
        parts.append(f"{where}: {problem.get('msg', 'invalid')}" if where else problem.get("msg", "invalid"))
    return "; ".join(parts) or "invalid request"


class Server:
    """The colorizer, its cache and its counters, shared by every request."""

    def __init__(self, colorizer: Colorizer, settings: ServeSettings):
        self.colorizer = colorizer
        self.settings = settings
        self.cache: PredictionCache[Prediction] = PredictionCache(settings.cache_bytes, settings.cache_seconds)
        self.network_lock = threading.Lock()  # one decode + network pass at a time
        self.network_passes = 0
        self.upload_folder: Path | None = None  # private (0700), made at start-up, removed at shut-down

    def temperature(self, T: float | None) -> float:
        T = self.colorizer.default_T if T is None else T
        if TEMPERATURE.problem(T):
            raise Refusal(422, f"T {TEMPERATURE.problem(T)}")
        return T

    def predict(self, path: Path) -> Prediction:
        prediction = predict(self.colorizer, path, self.settings.max_pixels, lock=self.network_lock)
        with self.network_lock:
            self.network_passes += 1
        return prediction

    def cached(self, image_id: str) -> Prediction:
        prediction = self.cache.get(image_id) if re.fullmatch(f"[0-9a-f]{{{ID_LENGTH}}}", image_id) else None
        if prediction is None:
            raise Refusal(404, f"image {image_id} is not in the cache (expired, or never posted); POST it again")
        return prediction

    def encoded(self, rgb: np.ndarray, prediction: Prediction, output_format: str, download: bool = False) -> Response:
        """An image response: (H, W, 3) uint8 encoded as png or jpg with the upload's EXIF and ICC;
        a JPEG for display with 4:2:0 chroma on every core (serve/jpeg.py), one to download as
        ``colorize photo`` writes it."""
        pil_format, _ = FORMATS[output_format]
        if pil_format == "JPEG" and max(rgb.shape[:2]) > JPEG_MAX_SIDE:
            height, width = rgb.shape[:2]
            raise Refusal(
                422,
                f"a JPEG holds at most {JPEG_MAX_SIDE:,} pixels a side, this image is {width}x{height}; ask for format=png",
            )
        if pil_format == "JPEG" and not download:
            exif = exif_with_marker(prediction.metadata.get("exif"))
            data = encode_jpeg(
                rgb, JPEG_QUALITY, DISPLAY_JPEG_SUBSAMPLING, exif, prediction.metadata.get("icc_profile")
            )
        else:
            data = encode(Image.fromarray(rgb), pil_format, prediction.metadata, JPEG_SUBSAMPLING)
        return Response(data, media_type=MEDIA_TYPES[pil_format])

    def colour(
        self, prediction: Prediction, T: float, output_format: str, preview: bool = False, download: bool = False
    ) -> Response:
        """The photo decoded at T from its cached log-probabilities, encoded (run in a worker thread)."""
        return self.encoded(render(self.colorizer, prediction, T, preview), prediction, output_format, download)


def image_headers(image_id: str, prediction: Prediction, T: float) -> dict[str, str]:
    width, height = prediction.size
    return {
        "X-Image-Id": image_id,
        "X-Temperature": f"{T:g}",
        "X-Image-Size": f"{width}x{height}",
        "X-Colour-Input": "1" if prediction.colour_input else "0",
    }


def create_app(colorizer: Colorizer, checkpoint: Path, settings: ServeSettings = ServeSettings()) -> FastAPI:
    """The application; ``app.state.server`` holds its :class:`Server` (cache, counters, upload folder)."""
    server = Server(colorizer, settings)
    model = describe_model(colorizer, checkpoint)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        server.upload_folder = Path(tempfile.mkdtemp(prefix="colorize-serve-"))
        sweeper = asyncio.create_task(sweep(server.cache, min(60.0, settings.cache_seconds)))
        try:
            yield
        finally:
            sweeper.cancel()
            shutil.rmtree(server.upload_folder, ignore_errors=True)

    # Swagger UI and ReDoc load their scripts from a CDN; the page works offline, so only the
    # OpenAPI description itself is served (/openapi.json).
    app = FastAPI(title="colorize", summary="Colorize photos: the network once, any temperature after.",
                  docs_url=None, redoc_url=None, lifespan=lifespan)  # fmt: skip
    app.state.server = server

    @app.exception_handler(Refusal)
    async def refused(request: Request, error: Refusal) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": one_line_validation(error)}, status_code=422)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/model")
    async def model_info() -> dict:
        """The model: checkpoint, architecture, default temperature, and the bundled model's card."""
        return {**model, "max_pixels": settings.max_pixels, "max_upload_bytes": settings.max_upload_bytes}

    @app.get("/api/status")
    async def status() -> dict:
        """Network passes so far and the cache's use."""
        return {"network_passes": server.network_passes, "cache": server.cache.stats()}

    @app.post(
        "/colorize",
        responses={**IMAGE_RESPONSE, 400: {"description": "not a usable image"}, 413: {"description": "too many bytes"}},
        openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}, "image/*": {"schema": {"type": "string", "format": "binary"}}}}},
    )  # fmt: skip
    async def colorize(
        request: Request,
        T: Annotated[
            float | None, Query(description="temperature: 0 = the mode, 1 = the mean; default the model's own")
        ] = None,
        format: Annotated[Format, Query(description=FORMAT_HELP)] = "png",
    ) -> Response:
        """Colorize the image sent as the request body (its raw bytes: JPEG, PNG, TIFF, WebP, ...).

        Returns the colour image at the upload's full resolution, with headers ``X-Image-Id`` (for
        ``GET /colorize/{id}``), ``X-Image-Size`` and ``X-Colour-Input`` (1 when the upload had colour).
        """
        T = server.temperature(T)
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > settings.max_upload_bytes:
            raise Refusal(413, f"upload: {int(length):,} bytes, more than {settings.max_upload_bytes:,}; refused")
        try:
            upload = await receive_upload(
                request.stream(), server.upload_folder, settings.max_pixels, settings.max_upload_bytes
            )
        except UploadError as error:
            raise Refusal(error.status, str(error)) from None
        image_id = upload.sha256[:ID_LENGTH]
        try:
            prediction = server.cache.get(image_id)
            if prediction is None:
                prediction = await run_in_threadpool(server.predict, upload.path)
                server.cache.put(image_id, prediction)
        except ImageError as error:
            raise Refusal(400, str(error)) from None
        finally:
            os.unlink(upload.path)
        response = await run_in_threadpool(server.colour, prediction, T, format)
        response.headers.update(image_headers(image_id, prediction, T))
        return response

    @app.get(
        "/colorize/{image_id}", responses={**IMAGE_RESPONSE, 404: {"description": "not in the cache: POST it again"}}
    )
    async def recolor(
        image_id: str,
        T: Annotated[float | None, Query(description="temperature; default the model's own")] = None,
        format: Annotated[Format, Query(description=FORMAT_HELP)] = "png",
        preview: Annotated[
            bool, Query(description=f"at most {PREVIEW_SIDE} pixels on the long side (the moving slider's)")
        ] = False,
        download: Annotated[
            bool, Query(description="send as an attachment; a JPEG with full-resolution chroma (4:4:4)")
        ] = False,
    ) -> Response:
        """A posted image at another temperature, re-decoded from its cached log-probabilities
        (no network pass)."""
        T = server.temperature(T)
        prediction = server.cached(image_id)
        response = await run_in_threadpool(server.colour, prediction, T, format, preview, download)
        response.headers.update(image_headers(image_id, prediction, T))
        if download:
            response.headers["Content-Disposition"] = "attachment"
        return response

    @app.get(
        "/colorize/{image_id}/gray",
        responses={200: {"content": {"image/png": {}}}, 404: {"description": "not in the cache"}},
    )
    async def gray(image_id: str) -> Response:
        """The posted image's lightness as neutral gray: what the network saw (PNG)."""
        prediction = server.cached(image_id)
        return await run_in_threadpool(lambda: server.encoded(render_gray(prediction), prediction, "png"))

    return app


async def sweep(cache: PredictionCache, every_seconds: float) -> None:
    """Drop expired cache entries now and then, even when no request comes."""
    while True:
        await asyncio.sleep(every_seconds)
        cache.stats()


def run_server(app: FastAPI, host: str, port: int) -> None:
    """Run the application with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")
