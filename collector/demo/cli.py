"""``burnline demo``: burnline on its built-in default plus three demo services, an SLO each, and a
checkout incident that pages and resolves (see collector/demo/scenario.py for the timeline and math).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
from typing import Any

from collector.config.types import split_endpoint
from collector.core.logsetup import configure_logging

# The demo's own modules (the OTLP protobufs, rich) are imported inside run() and _traffic_only():
# ``burnline run`` builds this parser too, and should not carry them.

DESCRIPTION = (
    "Runs burnline on its built-in default receivers (loopback only; default ports when free) with "
    "three demo services (checkout, cart, search) sending Fluent Forward logs, OTLP spans and "
    "scraped metrics through them, each with an SLO. After a minute checkout fails for a few "
    "seconds: its page alert fires within seconds and resolves after recovery. The terminal shows "
    "rates, SLO states and alerts live, and the status page URL. Ends after --duration, or with "
    "Ctrl-C, with a summary line giving the page alert's detection and resolution times."
)


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"the duration must be a positive number of seconds, not {text}")
    return value


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return text.rstrip("/")


def _address(text: str) -> tuple[str, int]:
    try:
        return split_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration",
        type=_duration,
        metavar="SECONDS",
        help="end by itself after this many seconds (150 shows the alert fire and resolve); "
        "default: run until Ctrl-C",
    )
    parser.add_argument(
        "--alertmanager",
        type=_url,
        action="append",
        default=[],
        metavar="URL",
        help="send the SLO alerts to this Alertmanager (API v2), e.g. http://127.0.0.1:9093; "
        "repeat for an HA pair",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="keep burnline's data (local store, SLO counts) here, to query with `burnline logs` and "
        "`burnline traces` afterwards; default: a temporary directory removed at the end",
    )
    parser.add_argument(
        "--no-live", dest="live", action="store_false", help="plain progress lines instead of the live view"
    )
    only = parser.add_argument_group(
        "traffic only",
        "The demo services alone, sending to a burnline that runs elsewhere (the compose stack's "
        "sample service): no burnline, no view; SIGTERM or Ctrl-C stops them.",
    )
    only.add_argument("--traffic-only", action="store_true", help="play the demo services only")
    only.add_argument(
        "--forward",
        type=_address,
        default=("127.0.0.1", 24224),
        metavar="HOST:PORT",
        help="burnline's Fluent Forward receiver (default 127.0.0.1:24224)",
    )
    only.add_argument(
        "--otlp",
        type=_url,
        default="http://127.0.0.1:4318",
        metavar="URL",
        help="burnline's OTLP/HTTP receiver (default http://127.0.0.1:4318)",
    )
    only.add_argument(
        "--metrics-listen",
        type=_address,
        default=("127.0.0.1", 9101),
        metavar="HOST:PORT",
        help="serve checkout's /metrics here, cart's and search's on the next two ports (default "
        "127.0.0.1:9101)",
    )
    only.add_argument(
        "--incident-every",
        type=_duration,
        default=0.0,
        metavar="SECONDS",
        help="replay the checkout incident this often (default: once, after a minute)",
    )
    parser.set_defaults(func=run)


def add_parser(subparsers: Any) -> None:
    """Adds ``demo`` to burnline's command line."""
    demo = subparsers.add_parser(
        "demo",
        help="see burnline at work: demo services, SLOs, an incident that pages",
        description=DESCRIPTION,
    )
    _configure(demo)


def _traffic_only(args: argparse.Namespace) -> int:
    from collector.demo.standalone import TrafficOptions, run_traffic

    configure_logging("info")
    options = TrafficOptions(
        forward=args.forward,
        otlp_url=args.otlp,
        metrics_host=args.metrics_listen[0],
        metrics_port=args.metrics_listen[1],
        incident_every=args.incident_every,
    )
    return asyncio.run(run_traffic(options))


def run(args: argparse.Namespace) -> int:
    if args.traffic_only:
        return _traffic_only(args)
    if args.incident_every:
        print("burnline demo: --incident-every goes with --traffic-only", file=sys.stderr)
        return 2
    from rich.console import Console
    from rich.logging import RichHandler

    from collector.demo.runner import DemoOptions, run_demo

    console = Console(highlight=False)
    if args.live and console.is_terminal:
        # burnline's own warnings print above the live view instead of tearing it.
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    else:
        configure_logging("warning")
    live = bool(args.live and console.is_terminal)
    options = DemoOptions(
        duration=args.duration, alertmanagers=list(args.alertmanager), data_dir=args.data_dir, live=live
    )
    result = asyncio.run(run_demo(options, console))
    return result.exit_code


def build_parser() -> argparse.ArgumentParser:
    """The ``demo`` subcommand's options as a parser of their own."""
    parser = argparse.ArgumentParser(prog="burnline demo", description=DESCRIPTION)
    _configure(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m collector.demo.cli [--duration S] ...``: the ``demo`` subcommand on its own."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
