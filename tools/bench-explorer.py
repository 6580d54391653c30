#!/usr/bin/env python3
"""Size and time to first paint of each task's explorer, in headless chromium.

    .venv/bin/python tools/bench-explorer.py results [--screenshots DIR]

Prints, per ``results/<task>/explorer.html``: its size, the first contentful
paint and the time until the page's script has drawn everything (the page
sets ``body[data-ready]``), as chromium's Performance API reports them, the
median of three loads; with ``--screenshots``, a full-page PNG of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> int:
    from browser import opened

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--screenshots", type=Path)
    args = parser.parse_args()
    pages = sorted(args.results.glob("*/explorer.html"))
    if not pages:
        print(f"no */explorer.html under {args.results}", file=sys.stderr)
        return 1
    print(f"{'task':<14}{'size MB':>9}{'first paint ms':>16}{'ready ms':>10}")
    for html in pages:
        paints, readies = [], []
        for attempt in range(3):
            with opened(html) as (page, errors, requests):
                paint = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null")
                ready = page.evaluate("performance.now()")
                if errors or requests:
                    print(f"{html}: console errors {errors}, requests {requests}", file=sys.stderr)
                    return 1
                if args.screenshots and attempt == 0:
                    args.screenshots.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(args.screenshots / f"explorer-{html.parent.name}.png"), full_page=True)
            paints.append(paint)
            readies.append(ready)
        size = html.stat().st_size / 1e6
        print(
            f"{html.parent.name:<14}{size:>9.2f}{statistics.median(paints):>16.0f}{statistics.median(readies):>10.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
