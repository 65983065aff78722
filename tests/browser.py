"""Headless Chromium for the HTML report's tests: screenshots read back as pixels, and the
DOM after the page's scripts ran. Every helper skips the test when no ``chromium`` binary is
on PATH (``apt-get install chromium``; ``.ci/run`` installs it)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

# A fresh profile each run, and nothing started that would reach the network.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def chromium_binary() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium binary on PATH (apt-get install chromium; .ci/run does)")
    return chromium


def run_chromium(page: Path, *args: str, timeout: float = 180) -> str:
    """Load ``page`` in a fresh headless Chromium with ``args``; its stdout."""
    chromium = chromium_binary()
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=page.parent)
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.stdout


def screenshot(html_file: Path, png: Path, size: tuple[int, int] = (1200, 1600)) -> np.ndarray:
    """The page as Chromium draws it in a ``size`` window, as an (h, w, 3) array."""
    run_chromium(html_file, f"--screenshot={png}", f"--window-size={size[0]},{size[1]}")
    return read_png(png)


def dump_dom(html_file: Path) -> str:
    """The DOM once the page has loaded and its scripts (and load handlers) have run."""
    return run_chromium(html_file, "--dump-dom")


def read_png(path: Path) -> np.ndarray:
    """An 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) as an (h, w, 3) array."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, bytearray(), b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0), (depth, interlace)
    assert colour in (2, 6), colour  # RGB or RGBA
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(bytes(idat))
    rows = np.zeros((height, stride), np.uint8)
    previous = np.zeros(stride, np.uint8)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]
        rows[y] = previous = _unfilter(kind, line, previous, bpp)
    return rows.reshape(height, width, bpp)[:, :, :3]


def _unfilter(kind: int, line: bytes, up: np.ndarray, bpp: int) -> np.ndarray:
    cur = np.frombuffer(line, np.uint8)
    if kind == 0:
        return cur.copy()
    if kind == 2:  # Up: vectorises
        return cur + up
    if kind == 1:  # Sub: a running sum per channel, mod 256
        return (
            (np.cumsum(cur.reshape(-1, bpp), axis=0, dtype=np.uint64) % 256)
            .astype(np.uint8)
            .reshape(-1)
        )
    # Average and Paeth depend on the byte just decoded: one byte at a time.
    out = bytearray(line)
    above = up.tolist()
    for i in range(len(out)):
        left = out[i - bpp] if i >= bpp else 0
        upper_left = above[i - bpp] if i >= bpp else 0
        if kind == 3:
            out[i] = (out[i] + (left + above[i]) // 2) & 0xFF
        else:
            p = left + above[i] - upper_left
            pa, pb, pc = abs(p - left), abs(p - above[i]), abs(p - upper_left)
            pred = left if pa <= pb and pa <= pc else above[i] if pb <= pc else upper_left
            out[i] = (out[i] + pred) & 0xFF
    return np.frombuffer(bytes(out), np.uint8)


def highlighted_bands(image: np.ndarray, colour: str) -> int:
    """How many separate horizontal bands of ``colour`` span the page's table: one per
    highlighted row (rows are separated by a white rule). A scanline belongs to a band when
    the colour fills the cell padding at both ends of the table, where no text is drawn,
    and most of the width between them."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], np.int16)
    match = np.all(np.abs(image.astype(np.int16) - rgb) <= 2, axis=2)
    columns = np.flatnonzero(match.any(axis=0))
    if columns.size == 0:
        return 0
    left, right = columns[0], columns[-1]
    band = (
        match[:, left : left + 4].all(axis=1)
        & match[:, right - 3 : right + 1].all(axis=1)
        & (match.sum(axis=1) > (right - left) // 3)
    )
    return int(np.count_nonzero(band[1:] & ~band[:-1]) + band[0])


def wide_bands(image: np.ndarray, colour: str, share: float = 0.6) -> int:
    """How many separate horizontal bands of ``colour`` cover more than ``share`` of the
    image's width (table rows; not a small label of the same colour)."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], np.int16)
    match = np.all(np.abs(image.astype(np.int16) - rgb) <= 2, axis=2)
    band = match.sum(axis=1) > share * image.shape[1]
    return int(np.count_nonzero(band[1:] & ~band[:-1]) + band[0])
