"""Render a run's HTML report and save a headless-Chromium screenshot of it (for the docs).

    python tools/docs/screenshot_report.py runs/<id> [-o docs/img/report_screenshot.png] [--height 3000]

Writes RUN/report.html (re-rendered) and the PNG; needs chromium, chromium-browser or google-chrome.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / d) for d in ("bench", "methods", "metrics", "reports")]   # a plain checkout: its four roots

from latent_edit_bench.reports.html import render_report  # noqa: E402


def screenshot(html: Path, out: Path, width: int = 1280, height: int = 3000) -> Path:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if browser is None:
        sys.exit("no chromium, chromium-browser or google-chrome on PATH")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--screenshot={out.resolve()}",
                        f"--window-size={width},{height}", html.resolve().as_uri()],
                       check=True, capture_output=True, timeout=180)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="run folder (manifest.json, summary.csv, ...)")
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "img" / "report_screenshot.png")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=3000)
    args = ap.parse_args()
    html = render_report([args.run], args.run / "report.html")
    print(f"wrote {html} and {screenshot(html, args.out, args.width, args.height)}")


if __name__ == "__main__":
    main()
