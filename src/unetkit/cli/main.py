"""Command line: ``unetkit VERB ...``.  Parsing, progress bars and error reporting only.

Every expected failure (bad file, illegal tile, wrong channel count...) ends in one line
``unetkit: error: <file>: <problem>`` on stderr and exit status 2; no traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from .parser import build_parser
from .verbs import CLIError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (CLIError, ValueError, FileNotFoundError) as exc:
        print(f"unetkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unetkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `unetkit sizes | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
