"""The ``cryoml`` command: one subcommand per workflow stage.

Each subcommand is a module of this package with a docstring (first line: help; the rest:
examples), ``add_args(parser)`` and ``main(args) -> int``. Modules import their heavy
dependencies inside ``main`` so that ``cryoml --help`` stays fast and loads no network backend.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from cryoml._errors import CryomlError

__all__ = ["build_parser", "main"]

# Order of appearance in --help.
SUBCOMMANDS = [
    "info",
    "preprocess",
    "simulate",
    "tomoseg",
    "subtomo",
    "pick",
    "demo",
    "fetch",
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with one subparser per module in :data:`SUBCOMMANDS`."""
    from cryoml import __version__

    parser = argparse.ArgumentParser(
        prog="cryoml",
        description="Deep-learning methods of cryo-EM and cryo-ET: TomoSeg, subtomogram "
        "classification and subdivision, DeepEM particle picking.",
    )
    parser.add_argument("--version", action="version", version=f"cryoml {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"cryoml.cli.{name.replace('-', '_')}")
        if not hasattr(module, "add_args") or not hasattr(module, "main"):
            raise RuntimeError(f"cryoml.cli.{name} lacks add_args() or main()")
        doc = (module.__doc__ or "").strip()
        summary, _, epilog = doc.partition("\n")
        subparser = subparsers.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=epilog.strip() or None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_args(subparser)
        subparser.set_defaults(_main=module.main)
    return parser


#: Commands that train or apply networks, and so load Keras's backend.
_KERAS_COMMANDS = frozenset({"demo", "tomoseg", "subtomo", "pick"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cryoml`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # Dask's scheduler and workers log ~20 INFO lines per run; keep their warnings only.
        for name in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command in _KERAS_COMMANDS and not args.verbose:
        from cryoml._quiet import quiet_tensorflow

        quiet_tensorflow()  # its start-up lines and retracing warnings, not over our output
    try:
        return int(args._main(args) or 0)
    except CryomlError as error:
        print(f"cryoml {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cryoml {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
