"""Draw edge_app/web/static/favicon.ico: the web UI's icon (static/icon.svg, a green
disc) as a Windows icon, for the browsers and proxies that ask for /favicon.ico whatever
the page links. Drawn here, not downloaded, and byte for byte reproducible (uncompressed
32-bit bitmaps: no compressor version can change the file); tests/test_favicon.py checks
that the file in the repository is what this draws.

Usage: python tools/draw_favicon.py [--check]   (--check: exit 1 if the file differs)
"""
from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "edge_app" / "web" / "static" / "favicon.ico"
GREEN = (0x10, 0x7C, 0x10)  # icon.svg's fill, the LED's "Engaged" green
SIZES = (16, 32)
SAMPLES = 4  # per pixel side: anti-aliased edge


def disc(size: int) -> list[list[int]]:
    """Alpha (0-255) of each pixel, top row first: icon.svg's circle (centre 8,8, radius 7
    on a 16-unit canvas) scaled to ``size``."""
    centre, radius = size / 2, size * 7 / 16
    rows = []
    for y in range(size):
        row = []
        for x in range(size):
            inside = sum((x + (i + 0.5) / SAMPLES - centre) ** 2 + (y + (j + 0.5) / SAMPLES - centre) ** 2
                         <= radius ** 2 for i in range(SAMPLES) for j in range(SAMPLES))
            row.append(round(255 * inside / SAMPLES ** 2))
        rows.append(row)
    return rows


def bitmap(size: int) -> bytes:
    """One icon image: a BITMAPINFOHEADER (height doubled: colour then mask), BGRA rows
    bottom-up, and an all-clear AND mask (the alpha channel does the shape)."""
    header = struct.pack("<IiiHHIIiiII", 40, size, size * 2, 1, 32, 0, 0, 0, 0, 0, 0)
    red, green, blue = GREEN
    pixels = b"".join(bytes((blue, green, red, alpha)) for row in reversed(disc(size)) for alpha in row)
    mask_row = ((size + 31) // 32) * 4
    return header + pixels + bytes(mask_row * size)


def draw() -> bytes:
    """The whole .ico file: its directory, then each size's bitmap."""
    images = [bitmap(size) for size in SIZES]
    offset = 6 + 16 * len(images)
    out = struct.pack("<HHH", 0, 1, len(images))
    for size, image in zip(SIZES, images):
        out += struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(image), offset)
        offset += len(image)
    return out + b"".join(images)


def main(argv: list[str]) -> int:
    # argparse: any other word (--help, a typo of --check) rewrote the icon
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only compare: exit 1 if the file differs from what this draws")
    args = p.parse_args(argv)
    icon = draw()
    if args.check:
        if not OUT.exists() or OUT.read_bytes() != icon:
            print(f"{OUT} is not what tools/draw_favicon.py draws: run it without --check", file=sys.stderr)
            return 1
        return 0
    OUT.write_bytes(icon)
    print(f"wrote {OUT} ({len(icon)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
