"""`colorize serve`: the cache, the model card, re-decoding against the Colorizer, the API's
refusals, the command line, and the page in headless Chromium."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import encode_png, png_with_claimed_size, skimage_photo
from PIL import Image, JpegImagePlugin
from skimage.color import rgb2lab

from colorize_core.checkpoint import load_checkpoint
from colorize_core.cli import main
from colorize_core.inference.colorizer import BUNDLED_CHECKPOINT, Colorizer, lightness_of
from colorize_core.serve import model_info
from colorize_core.serve.app import ServeSettings, create_app
from colorize_core.serve.cache import PredictionCache
from colorize_core.serve.prediction import predict, render, render_gray

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def jpeg_bytes(rgb: np.ndarray, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def lightness(image: Image.Image) -> np.ndarray:
    """L* by scikit-image, (H, W): the independent reference for the outputs' lightness."""
    return rgb2lab(np.asarray(image.convert("RGB")) / 255.0)[..., 0]


def chroma(image: Image.Image) -> np.ndarray:
    ab = rgb2lab(np.asarray(image.convert("RGB")) / 255.0)[..., 1:]
    return np.hypot(ab[..., 0], ab[..., 1])


CAT = skimage_photo("chelsea")  # (300, 451, 3) colour photo
CAT_JPEG = jpeg_bytes(CAT)
GRAY_CAT_JPEG = jpeg_bytes(np.asarray(Image.fromarray(CAT).convert("L").convert("RGB")))


class Sized:
    def __init__(self, nbytes: int):
        self.nbytes = nbytes


def test_cache_drops_the_least_recently_used_and_the_expired():
    now = [0.0]
    cache = PredictionCache(max_bytes=100, max_age_seconds=10, clock=lambda: now[0])
    a, b, c = Sized(40), Sized(40), Sized(40)
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # now b is the least recently used
    cache.put("c", c)  # 120 > 100: b goes
    assert cache.get("b") is None and cache.get("a") is a and cache.get("c") is c
    assert cache.stats() == {"entries": 2, "bytes": 80, "max_bytes": 100}
    cache.put("huge", Sized(101))  # larger than the whole budget: not kept, nothing else lost
    assert cache.get("huge") is None and cache.stats()["entries"] == 2
    now[0] = 5.0
    cache.get("c")  # used at 5: expires at 15; a (used at 0) at 10
    now[0] = 10.5
    assert cache.get("a") is None and cache.get("c") is c
    now[0] = 30.0
    assert cache.stats() == {"entries": 0, "bytes": 0, "max_bytes": 100}


def test_model_card_summary_agrees_with_the_readme():
    """The page's quality table comes from the model card; the README quotes the same figures."""
    card = model_info.model_card_summary(model_info.MODEL_CARD.read_text(encoding="utf-8"))
    assert "bundled" in card["name"]
    assert card["facts"]["trained on"].startswith("37,718 colour photos")
    assert card["quality"]["columns"] == ["variant", "top-1", "top-5", "AuC", "AuC rebal.", "colourfulness (Δ)"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    T = f"{load_checkpoint(BUNDLED_CHECKPOINT).default_T:g}"
    row = next(line for line in readme.splitlines() if line.startswith(f"| **bundled model, T = {T}**"))
    figures = [cell.strip().strip("*") for cell in row.strip("|").split("|")][1:]
    assert next(r for r in card["quality"]["rows"] if r[0] == f"this model, T = {T}")[1:] == figures


def test_find_checkpoint_prefers_the_given_then_the_bundled_then_models_best(tmp_path, monkeypatch):
    assert model_info.find_checkpoint(tmp_path / "mine.pt", tmp_path) == tmp_path / "mine.pt"
    assert model_info.find_checkpoint(None, tmp_path) == BUNDLED_CHECKPOINT
    monkeypatch.setattr(model_info, "BUNDLED_CHECKPOINT", tmp_path / "gone.pt")
    with pytest.raises(
        ValueError, match=r"no model to serve: the bundled .*gone.pt is missing and there is no models/best.pt"
    ):
        model_info.find_checkpoint(None, tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "best.pt").write_bytes(b"")
    assert model_info.find_checkpoint(None, tmp_path) == tmp_path / "models" / "best.pt"


@pytest.fixture(scope="module")
def colorizer() -> Colorizer:
    return Colorizer.pretrained(device="cpu")


@pytest.fixture
def forward_passes(colorizer):
    """Counts the network's forward passes (a hook on the model itself, not the server's counter)."""
    count = [0]
    handle = colorizer.model.register_forward_hook(lambda *args: count.__setitem__(0, count[0] + 1))
    yield count
    handle.remove()


def test_re_decoding_the_cached_log_probabilities_equals_the_colorizer(colorizer, forward_passes, tmp_path):
    """One network pass, then any T: pixel for pixel what Colorizer.colorize gives for that T (with
    the compiled composition the page uses)."""
    colorizer.compiled = True
    path = tmp_path / "cat.jpg"
    path.write_bytes(GRAY_CAT_JPEG)
    prediction = predict(colorizer, path, max_pixels=10**6)
    assert forward_passes[0] == 1
    picture = Image.open(path)
    for T in (0.0, 0.38, 1.0):
        np.testing.assert_array_equal(render(colorizer, prediction, T), np.asarray(colorizer.colorize(picture, T)))
    assert forward_passes[0] == 1 + 3  # the reference's own passes; render ran none
    assert not prediction.colour_input and prediction.size == (451, 300)
    np.testing.assert_allclose(lightness(Image.fromarray(render_gray(prediction))), lightness_of(picture), atol=0.5)
    assert chroma(Image.fromarray(render_gray(prediction))).max() < 1.0


def test_previews_are_the_full_decode_at_a_smaller_size(colorizer, tmp_path):
    """While the slider moves the page asks for previews: at most PREVIEW_SIDE on the long side,
    the same colours as the full-resolution decode reduced to that size."""
    from colorize_core.serve.prediction import PREVIEW_SIDE

    path = tmp_path / "scan.png"
    Image.fromarray(skimage_photo("astronaut")).convert("L").resize((2048, 1536)).save(path)
    prediction = predict(colorizer, path, max_pixels=10**7)
    full = render(colorizer, prediction, 0.4)
    preview = render(colorizer, prediction, 0.4, preview=True)
    assert full.shape == (1536, 2048, 3) and preview.shape == (768, 1024, 3) and PREVIEW_SIDE == 1024
    reduced = np.asarray(Image.fromarray(full).resize((1024, 768), Image.Resampling.BOX), float)
    assert np.abs(preview - reduced).mean() < 2.0
    assert prediction.nbytes == 1536 * 2048 * 4 + 768 * 1024 * 4 + prediction.log_probs.numel() * 4


@contextlib.contextmanager
def running(app):
    """The app served by uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def served(colorizer):
    app = create_app(colorizer, BUNDLED_CHECKPOINT, ServeSettings(max_pixels=50_000_000, max_upload_bytes=3 << 20))
    with running(app) as url:
        yield url, app.state.server


def request(url: str, data=None, method: str = "GET", headers: dict | None = None) -> tuple[int, dict, bytes]:
    """(status, headers (any case), body) of one request; 4xx and 5xx answers too."""
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data=data, method=method, headers=headers or {})
        ) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:4"])
def test_a_jpeg_encoded_in_bands_decodes_to_the_whole_photos_pixels(subsampling):
    """serve/jpeg.py: bands of MCU rows encoded apart and joined by restart markers decode (Pillow's
    own libjpeg) to exactly the pixels of the photo encoded in one piece, at sizes that are and are
    not whole MCUs, with as many bands as will fit and with more MCUs than one restart interval can
    count; EXIF and an ICC profile longer than one marker come back as given."""
    from colorize_core.inference.photo import OUTPUT_MARKER, exif_with_marker
    from colorize_core.serve.jpeg import encode_jpeg

    photo = skimage_photo("astronaut")
    icc_profile = bytes(range(256)) * 300  # 76,800 bytes: two APP2 markers
    for width, height, bands in ((451, 300, 2), (1024, 768, 3), (33, 17, 5), (7, 100, 2), (4400, 4000, 2)):
        pixels = np.asarray(Image.fromarray(photo).resize((width, height)))
        whole = np.asarray(Image.open(io.BytesIO(encode_jpeg(pixels, 95, subsampling, bands=1))))
        data = encode_jpeg(pixels, 95, subsampling, exif_with_marker(None), icc_profile, bands=bands)
        joined = Image.open(io.BytesIO(data))
        assert joined.size == (width, height) and b"\xff\xdd" in data  # a restart interval (DRI)
        np.testing.assert_array_equal(np.asarray(joined), whole)
        assert JpegImagePlugin.get_sampling(joined) == {"4:2:0": 2, "4:4:4": 0}[subsampling]
        assert joined.info["icc_profile"] == icc_profile and joined.getexif()[0x0131] == OUTPUT_MARKER


def test_the_api_colorizes_once_and_re_decodes_other_temperatures(served, forward_passes):
    url, server = served
    status, headers, body = request(f"{url}/colorize?T=0.7", GRAY_CAT_JPEG, "POST")
    assert status == 200 and headers["content-type"] == "image/png"
    colour = Image.open(io.BytesIO(body))
    assert colour.size == (451, 300) and headers["X-Image-Size"] == "451x300" and headers["X-Colour-Input"] == "0"
    gray = Image.open(io.BytesIO(GRAY_CAT_JPEG))
    np.testing.assert_allclose(lightness(colour), lightness(gray), atol=1.0)  # the input's own L
    assert chroma(colour).mean() > 5  # colour, not a gray copy
    assert forward_passes[0] == 1

    image_id = headers["X-Image-Id"]
    status, headers, body = request(f"{url}/colorize/{image_id}?T=0.05")
    assert status == 200 and headers["X-Temperature"] == "0.05"
    cooler = Image.open(io.BytesIO(body))
    assert np.abs(np.asarray(cooler, float) - np.asarray(colour, float)).mean() > 1  # another T, another image
    np.testing.assert_allclose(lightness(cooler), lightness(gray), atol=1.0)
    status, _, body = request(f"{url}/colorize/{image_id}/gray")
    assert status == 200 and chroma(Image.open(io.BytesIO(body))).max() < 1.0
    status, headers, body = request(f"{url}/colorize?T=0.2&format=jpg", GRAY_CAT_JPEG, "POST")  # the same bytes again
    assert status == 200 and headers["content-type"] == "image/jpeg" and headers["X-Image-Id"] == image_id
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(body))) == 2  # 4:2:0, for display
    status, headers, body = request(f"{url}/colorize/{image_id}?T=0.2&format=jpg&download=true")
    assert headers["content-disposition"] == "attachment"
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(body))) == 0  # 4:4:4, as colorize photo writes
    assert forward_passes[0] == 1  # every answer since the first came from the cache

    _, headers, _ = request(f"{url}/colorize", CAT_JPEG, "POST")
    assert headers["X-Colour-Input"] == "1" and forward_passes[0] == 2
    assert json.loads(request(f"{url}/api/status")[2])["network_passes"] == server.network_passes
    assert server.upload_folder.stat().st_mode & 0o777 == 0o700 and not any(server.upload_folder.iterdir())


def truncated_jpeg() -> bytes:
    return CAT_JPEG[: len(CAT_JPEG) // 2]


def post_early_refused(url: str, parts: list[bytes], content_length: int | None) -> tuple[int, dict, bytes]:
    """POST /colorize sending only ``parts`` of a body (with this Content-Length, else chunked),
    then read the answer: a server that refuses early answers before the rest would be sent."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/colorize")
    connection.putheader(
        *("Content-Length", str(content_length)) if content_length is not None else ("Transfer-Encoding", "chunked")
    )
    connection.endheaders()
    for part in parts:
        connection.send(part if content_length is not None else b"%x\r\n%s\r\n" % (len(part), part))
    response = connection.getresponse()
    answer = response.status, response.headers, response.read()
    connection.close()
    return answer


CAP = 3 << 20  # the test server's byte cap
BAD_UPLOADS = {
    "text": (b"this is not an image\n", 400, "upload: not a readable image file"),
    "truncated": (truncated_jpeg(), 400, "upload: cannot decode"),
    "bomb header": (png_with_claimed_size(100_000, 100_000), 400, "header claims 100000x100000 = 10,000,000,000 pixels, more than the limit of 50,000,000"),
    "0 bytes": (b"", 400, "upload: empty input (0 bytes)"),
}  # fmt: skip


def check_refusal(server, answer: tuple[int, dict, bytes], expected_status: int, reason: str) -> None:
    status, headers, body = answer
    detail = json.loads(body)["detail"]
    assert (status, headers["content-type"]) == (expected_status, "application/json")
    assert reason in detail and "\n" not in detail and "Traceback" not in detail
    assert not any(server.upload_folder.iterdir())  # nothing left behind


@pytest.mark.parametrize("kind", BAD_UPLOADS)
def test_bad_uploads_get_a_4xx_with_a_one_line_reason(served, forward_passes, kind):
    url, server = served
    body, expected_status, reason = BAD_UPLOADS[kind]
    check_refusal(server, request(f"{url}/colorize", body, "POST"), expected_status, reason)
    assert forward_passes[0] == 0  # never reaches the network


def test_a_strip_too_long_for_a_jpeg_is_refused_as_jpeg_and_served_as_png(served, forward_passes):
    """A 66,000×2 strip (within the pixel cap) is colorized once; asked for as a JPEG, which holds
    at most 65,500 pixels a side, it gets a 422 that says to ask for PNG, and the PNG comes back."""
    url, server = served
    buffer = io.BytesIO()
    Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (2, 258))[:, :66_000]).save(buffer, "PNG")
    status, headers, body = request(f"{url}/colorize?format=jpg", buffer.getvalue(), "POST")
    assert status == 422 and "at most 65,500 pixels a side" in json.loads(body)["detail"]
    status, headers, body = request(f"{url}/colorize?format=png", buffer.getvalue(), "POST")
    assert status == 200 and Image.open(io.BytesIO(body)).size == (66_000, 2)
    assert forward_passes[0] == 1  # the second POST re-used the first one's network pass


def test_uploads_over_the_byte_cap_are_refused_while_they_stream(served, forward_passes):
    url, server = served
    # a Content-Length over the cap: refused before a byte of the body is read
    answer = post_early_refused(url, [], content_length=CAP + 1)
    check_refusal(server, answer, 413, "upload: 3,145,729 bytes, more than 3,145,728; refused")
    # no Content-Length (chunked): refused as soon as the bytes that came exceed the cap
    answer = post_early_refused(url, [CAT_JPEG, bytes(CAP + 1 - len(CAT_JPEG))], content_length=None)
    check_refusal(server, answer, 413, "upload: more than 3,145,728 bytes; refused")
    # garbage: refused after its first MiB, never read to the end
    answer = post_early_refused(url, [bytes(1 << 20)], content_length=CAP)
    check_refusal(server, answer, 400, "upload: not a readable image file")
    assert forward_passes[0] == 0


@pytest.mark.parametrize(
    "query, reason",
    [
        ("T=hot", "T: Input should be a valid number"),
        ("T=2000", "T must be a temperature (0 = the mode, 1 = the mean) in [0, 100], got 2000.0"),
        ("T=nan", "T must be a temperature"),
        ("format=gif", "format: Input should be 'png' or 'jpg'"),
    ],
)
def test_bad_parameters_get_a_422_with_a_one_line_reason(served, query, reason):
    url, _ = served
    status, _, answer = request(f"{url}/colorize?{query}", CAT_JPEG, "POST")
    assert status == 422 and reason in json.loads(answer)["detail"]


def test_an_unknown_or_expired_image_is_a_404_that_says_post_it_again(served):
    url, _ = served
    for image_id in ("0" * 32, "nope", "..", "%2e%2e"):
        status, _, answer = request(f"{url}/colorize/{image_id}?T=0.3")
        assert status == 404 and "POST it again" in json.loads(answer)["detail"]
    assert request(f"{url}/colorize/../../etc/passwd")[0] == 404  # no route: nothing outside the cache is read


def test_the_openapi_description_is_served_and_no_page_needs_a_cdn(served):
    url, _ = served
    paths = json.loads(request(f"{url}/openapi.json")[2])["paths"]
    assert {"/colorize", "/colorize/{image_id}", "/colorize/{image_id}/gray", "/api/model"} <= set(paths)
    assert "image/*" in paths["/colorize"]["post"]["requestBody"]["content"]
    assert request(f"{url}/docs")[0] == 404  # Swagger UI would load from a CDN
    static = ROOT / "colorize_core" / "serve" / "static"
    for page in static.iterdir():
        assert "http://" not in page.read_text() and "https://" not in page.read_text(), page.name


def test_serve_command_options_and_errors(tmp_path, monkeypatch):
    runner = CliRunner()
    help_text = runner.invoke(main, ["serve", "--help"]).output
    assert "--host TEXT" in help_text and "127.0.0.1" in help_text and "--max-pixels" in help_text
    result = runner.invoke(main, ["serve", "--port", "70000"])
    assert result.exit_code == 2 and "must be a TCP port (0: any free one) in [0, 65,535], got 70000" in result.output
    result = runner.invoke(main, ["serve", "--checkpoint", str(tmp_path / "none.pt")])
    assert result.exit_code == 1 and "none.pt: no such checkpoint" in result.output and "Traceback" not in result.output
    monkeypatch.setitem(sys.modules, "fastapi", None)  # the base install, without the serve extra
    monkeypatch.delitem(sys.modules, "colorize_core.serve.app")
    result = runner.invoke(main, ["serve"])
    assert (
        result.exit_code == 1
        and 'needs the serve extra (fastapi is missing): pip install -e ".[serve]"' in result.output
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_colorize_serve_listens_on_loopback_and_stops_cleanly(tmp_path):
    """The real command: up on 127.0.0.1 only (by default), serving the page; Ctrl+C stops it."""
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # its private upload folder lands here, visibly
    process = subprocess.Popen([sys.executable, "-m", "colorize_core.cli", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.time() + 120
        while True:
            try:
                status, _, page = request(f"http://127.0.0.1:{port}/")
                break
            except urllib.error.URLError:
                assert process.poll() is None and time.time() < deadline, "colorize serve did not come up"
                time.sleep(0.2)
        assert status == 200 and b"/static/page.js" in page
        listening = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        local = {fields[1] for fields in listening if fields[3] == "0A"}  # state LISTEN
        assert f"0100007F:{port:04X}" in local and f"00000000:{port:04X}" not in local  # 127.0.0.1, not 0.0.0.0
        assert [p.name for p in tmp_path.iterdir()] == [next(tmp_path.iterdir()).name]
        assert next(tmp_path.iterdir()).name.startswith("colorize-serve-")
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert f"on http://127.0.0.1:{port}/" in stderr
    assert not any(tmp_path.iterdir())  # the private folder went with it


def canvas_pixels(page, selector: str) -> np.ndarray:
    """The pixels of an <img> as the browser decoded them, (H, W, 3) uint8."""
    data_url = page.evaluate(
        """(selector) => { const image = document.querySelector(selector);
            const canvas = Object.assign(document.createElement('canvas'), {width: image.naturalWidth, height: image.naturalHeight});
            canvas.getContext('2d').drawImage(image, 0, 0); return canvas.toDataURL('image/png'); }""",
        selector,
    )
    import base64

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_page_in_headless_chromium(colorizer, forward_passes, tmp_path):
    """Upload two photos at once, watch the colour appear, slide T (no second network pass), slide
    the split, download at full resolution; and a screenshot, to look at."""
    from playwright.sync_api import sync_playwright

    (tmp_path / "cat_gray.jpg").write_bytes(GRAY_CAT_JPEG)
    (tmp_path / "cat_colour.jpg").write_bytes(CAT_JPEG)
    app = create_app(colorizer, BUNDLED_CHECKPOINT)
    with running(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900}, accept_downloads=True)
        outside = []  # every request the page makes that leaves the server
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((url, "blob:", "data:")) else None)
        page.goto(url)
        page.wait_for_selector("#quality td")
        assert page.input_value("#temperature") == f"{colorizer.default_T:g}"  # the bundled model's own T
        assert "0.714" in page.inner_text("#quality") and "37,718" in page.inner_text("#model-facts")

        page.set_input_files("#files", [str(tmp_path / "cat_gray.jpg"), str(tmp_path / "cat_colour.jpg")])
        page.wait_for_selector(f'#after[data-temperature="{colorizer.default_T:g}"]')
        page.wait_for_function("document.querySelectorAll('#photos small').length == 2 && "
                               "[...document.querySelectorAll('#photos small')].every(s => s.textContent.includes('×'))")  # fmt: skip
        assert page.evaluate("document.getElementById('after').naturalWidth") == 451  # full resolution
        assert forward_passes[0] == 2  # one network pass per photo
        warm = canvas_pixels(page, "#after")

        page.locator("#temperature").fill("0.1")
        page.wait_for_selector('#after[data-temperature="0.1"]')
        cool = canvas_pixels(page, "#after")
        assert np.abs(warm.astype(float) - cool.astype(float)).mean() > 1  # the picture changed ...
        assert forward_passes[0] == 2  # ... without a network pass
        assert "re-decoded at T = 0.10" in page.inner_text("#timing")

        page.locator("#split").fill("30")
        assert page.evaluate("document.getElementById('before').style.clipPath") == "inset(0px 70% 0px 0px)"
        page.wait_for_function("document.getElementById('before').complete")
        shot = tmp_path / "serve.png"
        page.screenshot(path=str(shot), full_page=True)
        box = page.locator("#compare").bounding_box()
        pixels = Image.open(shot).convert("RGB")
        left = pixels.crop(
            (
                int(box["x"]) + 5,
                int(box["y"]) + 40,
                int(box["x"] + 0.25 * box["width"]),
                int(box["y"] + box["height"]) - 5,
            )
        )
        right = pixels.crop(
            (
                int(box["x"] + 0.4 * box["width"]),
                int(box["y"]) + 40,
                int(box["x"] + box["width"]) - 5,
                int(box["y"] + box["height"]) - 5,
            )
        )
        assert chroma(left).mean() < 2 and chroma(right).mean() > 5  # gray left of the split, colour right of it

        page.select_option("#format", "png")
        with page.expect_download() as download:
            page.click("#download")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        assert saved.name == "cat_gray_color.png"
        with Image.open(saved) as downloaded:
            assert downloaded.size == (451, 300) and downloaded.format == "PNG"
            np.testing.assert_allclose(
                lightness(downloaded), lightness(Image.open(tmp_path / "cat_gray.jpg")), atol=1.0
            )

        page.click("#photos li:nth-child(2)")  # the colour photo: compared with its original
        page.wait_for_function("document.getElementById('before-tag').textContent == 'original'")
        assert forward_passes[0] == 2

        # drag and drop: a file dropped on the drop zone is uploaded like a chosen one
        dropped = page.evaluate_handle(
            """(bytes) => { const transfer = new DataTransfer();
                transfer.items.add(new File([new Uint8Array(bytes)], 'dropped.png', {type: 'image/png'}));
                return transfer; }""",
            list(encode_png(skimage_photo("coffee")[:200, :300])),
        )
        page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
        page.wait_for_function("document.querySelector('#photos li:nth-child(3) small')?.textContent == '300 × 200'")
        assert forward_passes[0] == 3 and outside == []
        browser.close()
    print(f"screenshot: {shot}")
