"""Healthcheck of the target server container: exit 0 when ``GET URL`` answers 200, else 1.

Why a script: the CUDA PyTorch base image has no curl, and one check written with the standard
library serves the Dockerfile's ``HEALTHCHECK`` and docker-compose's ``healthcheck`` alike, so the
tests can run it against the real server. ``/health`` answers 503 while the model loads; that is
"not yet healthy", which the start period absorbs.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from collections.abc import Sequence

DEFAULT_URL = "http://127.0.0.1:8000/health"


def healthy(url: str, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (OSError, ValueError):  # refused, timed out, HTTP 503 (HTTPError is an OSError), bad URL
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Exit 0 when GET URL answers 200, else 1.")
    parser.add_argument("url", nargs="?", default=DEFAULT_URL, help=f"default: {DEFAULT_URL}")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S", help="default: 5 seconds")
    args = parser.parse_args(argv)
    if healthy(args.url, args.timeout):
        return 0
    print(f"unhealthy: {args.url}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
