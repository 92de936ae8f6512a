"""Command line: ``unetkit VERB ...``.  Parsing, progress and error reporting only.

Every failure a user can cause (a bad file, an illegal tile, a missing folder or permission, an
unknown device, a missing extra, too little memory) ends in one line
``unetkit: error: <what>: <why>`` on stderr and exit status 2, no traceback.  Anything else is a
bug in unetkit and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from .errors import user_error
from .parser import build_parser

__all__ = ["main"]


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    # warnings go through logging: one line each, above a bar (never glued to it), and
    # silenced by --quiet like the rest
    logging.captureWarnings(True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.verbose = getattr(args, "verbose", False)
    args.quiet = getattr(args, "quiet", False)
    if args.verbose and args.quiet:
        parser.error("give either --verbose or --quiet, not both")
    _configure_logging(args.verbose, args.quiet)
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():  # log lines above an active bar, not glued to it
            return args.func(args)
    except KeyboardInterrupt:
        print("unetkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `unetkit sizes | head`
        sys.stderr.close()
        return 0
    except Exception as exc:
        message = user_error(exc)
        if message is None:
            raise
        print(f"unetkit: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
