"""Test helpers: drive Debian's headless Chromium, read its PNG screenshots and its DOM dumps.

No PIL here, so :func:`read_png` is a minimal decoder (8-bit RGB/RGBA, the five PNG row filters) using numpy for
the filters that vectorise. :class:`DomIndex` collects elements with the chart (``svg[data-chart]``) they sit in.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                  "--no-first-run", "--disable-extensions", "--hide-scrollbars")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass(frozen=True)
class BrowserRun:
    stdout: str
    console: list[str]  # lines Chromium logged from the page's console (errors, CSP violations, …)


def run_chromium(url: str, *args: str, profile: Path, timeout: float = 60) -> BrowserRun:
    binary = chromium()
    assert binary, "chromium is not installed"
    proc = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}"
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return BrowserRun(stdout=proc.stdout, console=console)


def read_png(path: Path) -> np.ndarray:
    """The image as a ``height × width × channels`` uint8 array (8-bit RGB or RGBA, non-interlaced)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, header = 8, bytearray(), None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert header, "no IHDR chunk"
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unsupported PNG {header}"
    bpp = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(bytes(idat)), dtype=np.uint8).reshape(height, 1 + width * bpp)
    return _unfilter(raw, width, bpp).reshape(height, width, bpp)


def _unfilter(raw: np.ndarray, width: int, bpp: int) -> np.ndarray:
    out = np.zeros((raw.shape[0], width * bpp), dtype=np.uint8)
    prior = np.zeros(width * bpp, dtype=np.uint8)
    for y, row in enumerate(raw):
        kind, line = int(row[0]), row[1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:  # Sub: running sum per channel
            cur = (np.cumsum(line.reshape(width, bpp).astype(np.int64), axis=0) % 256).astype(np.uint8).ravel()
        elif kind == 2:  # Up
            cur = line + prior
        else:  # Average and Paeth depend on the byte just decoded: byte by byte
            cur = _sequential(kind, line.tolist(), prior.tolist(), bpp)
        out[y] = cur
        prior = out[y]
    return out


def _sequential(kind: int, line: list[int], prior: list[int], bpp: int) -> np.ndarray:
    cur = [0] * len(line)
    for i, value in enumerate(line):
        left = cur[i - bpp] if i >= bpp else 0
        up = prior[i]
        if kind == 3:
            cur[i] = (value + (left + up) // 2) & 0xFF
            continue
        corner = prior[i - bpp] if i >= bpp else 0
        p = left + up - corner
        pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
        pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
        cur[i] = (value + pred) & 0xFF
    return np.array(cur, dtype=np.uint8)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    chart: str | None  # data-chart of the enclosing svg, if any


class DomIndex(HTMLParser):
    """Every element of a DOM dump, in order, with the chart it belongs to; ``root`` holds ``<html>``'s attrs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.root: dict[str, str] = {}
        self._charts: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.root = named
        chart = self._charts[-1] if self._charts else None
        if tag == "svg":
            self._charts.append(named.get("data-chart"))
            chart = named.get("data-chart")
        self.elements.append(Element(tag, named, chart))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg" and self._charts:
            self._charts.pop()

    def count(self, chart: str, tag: str, cls: str) -> int:
        return sum(1 for e in self.elements if e.chart == chart and e.tag == tag
                   and cls in e.attrs.get("class", "").split())

    def by_id(self, element_id: str) -> Element:
        return next(e for e in self.elements if e.attrs.get("id") == element_id)


def parse_dom(html: str) -> DomIndex:
    index = DomIndex()
    index.feed(html)
    index.close()
    return index
