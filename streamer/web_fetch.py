"""Fetch ONNX Runtime Web for ``streamer web``: ``make web`` runs ``python streamer/web_fetch.py``.

The page runs the student in the browser with the npm package ``onnxruntime-web``, pinned to
:data:`ORT_VERSION` and checked against the registry's sha512 :data:`ORT_INTEGRITY`. Only the files the page
loads are kept, in ``streamer/web_static/ort/`` (not committed; about 41 MB, of which a browser downloads one
build: 14 MB for WASM, 27 MB for WebGPU):

* ``ort.wasm.min.mjs`` + ``ort-wasm-simd-threaded.{mjs,wasm}``: the CPU build (WASM, SIMD, threads);
* ``ort.webgpu.min.mjs`` + ``ort-wasm-simd-threaded.asyncify.{mjs,wasm}``: the WebGPU build (WASM too).

The tarball comes from ``npm pack`` (the npm registry, through npm's own cache); without npm, straight from the
registry's tarball address. Standard library only, so it runs before the package is installed.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ORT_PACKAGE = "onnxruntime-web"
ORT_VERSION = "1.30.0"
ORT_INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
ORT_TARBALL_URL = f"https://registry.npmjs.org/{ORT_PACKAGE}/-/{ORT_PACKAGE}-{ORT_VERSION}.tgz"
ORT_FILES = (
    "ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
    "ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm",
)
ORT_DIR = Path(__file__).resolve().parent / "web_static" / "ort"
MANIFEST = "MANIFEST.json"


def missing_files(directory: Path = ORT_DIR) -> list[str]:
    """The ORT files the page needs that are not in ``directory`` (or are from another version)."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return list(ORT_FILES)
    if manifest.get("version") != ORT_VERSION:
        return list(ORT_FILES)
    return [name for name in ORT_FILES if not (directory / name).is_file()]


def check_integrity(data: bytes, integrity: str = ORT_INTEGRITY) -> None:
    algo, _, want = integrity.partition("-")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != want:
        raise RuntimeError(f"{ORT_PACKAGE}@{ORT_VERSION}: tarball integrity {algo}-{got} is not the pinned {integrity}")


def download_tarball() -> bytes:
    """The package tarball: ``npm pack`` when npm is installed, else the registry's tarball address."""
    npm = shutil.which("npm")
    if npm:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [npm, "pack", f"{ORT_PACKAGE}@{ORT_VERSION}", "--silent", "--pack-destination", tmp]
            done = subprocess.run(cmd, capture_output=True, text=True)
            tgz = sorted(Path(tmp).glob("*.tgz"))
            if done.returncode == 0 and tgz:
                return tgz[0].read_bytes()
            print(f"web_fetch: npm pack failed ({done.stderr.strip()[-200:]}); trying {ORT_TARBALL_URL}", file=sys.stderr)
    with urllib.request.urlopen(ORT_TARBALL_URL, timeout=120) as response:
        return response.read()


def extract(data: bytes, directory: Path = ORT_DIR) -> dict:
    """Write the needed files from the tarball into ``directory``; returns the manifest it writes."""
    directory.mkdir(parents=True, exist_ok=True)
    sizes = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for name in ORT_FILES:
            member = tar.getmember(f"package/dist/{name}")
            blob = tar.extractfile(member).read()
            tmp = directory / f".{name}.part"
            tmp.write_bytes(blob)
            tmp.replace(directory / name)
            sizes[name] = len(blob)
    manifest = {"package": ORT_PACKAGE, "version": ORT_VERSION, "integrity": ORT_INTEGRITY, "license": "MIT",
                "source": ORT_TARBALL_URL, "bytes": sizes, "total_bytes": sum(sizes.values())}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def fetch(directory: Path = ORT_DIR, *, tarball: Path | None = None, force: bool = False) -> dict | None:
    """Fetch and unpack ONNX Runtime Web unless it is already there; returns the manifest when it wrote one."""
    if not force and not missing_files(directory):
        return None
    data = tarball.read_bytes() if tarball else download_tarball()
    check_integrity(data)
    return extract(data, directory)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="web_fetch", description=f"fetch {ORT_PACKAGE}@{ORT_VERSION} for `streamer web`")
    p.add_argument("--dest", type=Path, default=ORT_DIR, help="where the files go (default: the package's web_static/ort)")
    p.add_argument("--tarball", type=Path, default=None, help="use this already downloaded .tgz instead of the registry")
    p.add_argument("--force", action="store_true", help="fetch again even when the files are there")
    args = p.parse_args(argv)
    try:
        manifest = fetch(args.dest, tarball=args.tarball, force=args.force)
    except Exception as exc:   # noqa: BLE001 - one line for make
        print(f"web_fetch: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if manifest is None:
        print(f"{ORT_PACKAGE} {ORT_VERSION}: already in {args.dest}")
    else:
        print(f"{ORT_PACKAGE} {ORT_VERSION}: {len(manifest['bytes'])} files, "
              f"{manifest['total_bytes'] / 1e6:.1f} MB in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
