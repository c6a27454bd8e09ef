"""``streamer web``: serve the in-browser page (:mod:`streamer.web_server`) and print its address."""
from __future__ import annotations

import sys

from streamer.cli.options import add_debug_flag
from streamer.errors import InputError
from streamer.web_server import WebApp, WebOptions, serve


def register(sub) -> None:
    p = sub.add_parser(
        "web", help="serve a page that stylizes the webcam in the browser (ONNX Runtime Web, nothing uploaded)",
        description="Serve the streamer page: the webcam is stylized in the browser by ONNX Runtime Web (WebGPU or "
                    "WASM), with the bundled styles, any uploaded image, a strength slider, smoothing, snapshots "
                    "and recording. Nothing leaves the machine. Ctrl-C stops the server.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for the network)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--model", default=None,
                   help="student (default: the live tier) | student-live | student-hq | teacher-video | PATH.onnx")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the address")
    add_debug_flag(p)
    p.set_defaults(func=cmd_web)


def cmd_web(args) -> int:
    def ready(url: str, app: WebApp) -> None:
        print(url, flush=True)
        if not args.quiet:
            size = app.bundle_bytes()
            print(f"streamer web: model {app.config['model']['file']}, {len(app.config['styles'])} styles, "
                  f"ONNX Runtime Web {app.config['ort']['version']}; page download {size['total'] / 1e6:.1f} MB "
                  "(WASM); Ctrl-C to stop", file=sys.stderr, flush=True)
            if args.host not in ("127.0.0.1", "localhost", "::1"):
                print("streamer web: browsers only give the camera to https:// pages or to localhost; from another "
                      "machine, use an SSH tunnel or a TLS proxy", file=sys.stderr, flush=True)

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: not a TCP port (0..65535; 0 picks a free one)")
    serve(WebOptions(host=args.host, port=args.port, model=args.model), ready=ready)
    return 0
