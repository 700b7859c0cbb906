"""Time the photo doctor (scan_folder + normalise) on 20 synthetic 12-megapixel JPEGs."""

from __future__ import annotations

import argparse
import importlib.util
import random
import tempfile
import time
from pathlib import Path

from ioncannon.doctor.folder import normalise, scan_folder, usable

ROOT = Path(__file__).resolve().parents[1]


def _demo():  # noqa: ANN202 - a module
    spec = importlib.util.spec_from_file_location("make_demo_photos", ROOT / "assets" / "make_demo_photos.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_photos(folder: Path, count: int, size: tuple[int, int]) -> None:
    demo = _demo()
    rng = random.Random(12)
    for i in range(count):
        demo.draw_scene(rng, size).save(folder / f"IMG_{i:04d}.jpg", quality=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--resolution", type=int, default=512)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "photos", Path(tmp) / "out"
        src.mkdir()
        t0 = time.perf_counter()
        make_photos(src, args.count, (args.width, args.height))
        t1 = time.perf_counter()
        findings = scan_folder(src, args.resolution)
        t2 = time.perf_counter()
        written = normalise(src, findings, "zwx", "man", out, args.resolution)
        t3 = time.perf_counter()
        n = len([f for f in written if f.output])
        mp = args.width * args.height / 1e6
        print(f"{args.count} JPEGs of {args.width}x{args.height} ({mp:.1f} MP), made in {t1 - t0:.1f} s")
        print(f"scan_folder: {t2 - t1:.2f} s   normalise: {t3 - t2:.2f} s   total: {t3 - t1:.2f} s "
              f"({(t3 - t1) / args.count * 1000:.0f} ms/photo), {n} written, {len(usable(findings))} usable, "
              f"{sum(f.face_box is not None for f in findings)} faces found")


if __name__ == "__main__":
    main()
