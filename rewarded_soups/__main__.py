"""Command line: ``python -m rewarded_soups verify [RESULTS]``.

``verify`` checks every directory the workflow wrote under RESULTS (default
``results``) against its manifest and prints, for each damaged one, what
changed and the command that rebuilds it; exit status 1 when any is damaged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rewarded_soups import manifest


def verify(results: Path) -> int:
    if not results.is_dir():
        print(f"{results} is not a directory (run from the workflow's directory, or give the results path)")
        return 2
    checked = manifest.scan(results)
    damaged = [(d, p) for d, p in checked if p]
    for directory, found in damaged:
        rule = manifest.writer_rule(directory) or "?"
        print(f"CORRUPTED {directory} (rule {rule}): {'; '.join(found)}")
        print(f"  rebuild: snakemake --forcerun {directory}")
    print(f"{len(checked)} artifact directories checked, {len(damaged)} damaged")
    return 1 if damaged else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewarded_soups", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("verify", help="check every result directory against its manifest")
    check.add_argument("results", nargs="?", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    return verify(args.results)


if __name__ == "__main__":
    sys.exit(main())
