"""``burnline slo status`` and ``burnline slo rules``.

- ``status`` asks a running burnline (its admin ``/api/v1/slos``; the address comes from
  ``-c config``'s ``service.admin.endpoint`` or ``--admin``) and prints every SLO: objective, SLI
  now, burn rate per window against each alert condition's factor, budget left, alert states.
- ``rules`` prints Prometheus recording and alerting rules (Sloth's names) for the SLOs of
  ``-c config`` and/or the given SLO files: the scale-out path, where Prometheus sums
  ``burnline_slo_events_total`` across replicas.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from collector.config import ConfigError, load_config


def _admin_url(args: argparse.Namespace) -> str:
    if args.admin:
        return str(args.admin) if "://" in args.admin else f"http://{args.admin}"
    from collector.config.types import split_endpoint

    config = load_config(args.config)
    host, port = split_endpoint(config.service.admin.endpoint)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def status(args: argparse.Namespace) -> int:
    from collector.slo.status import StatusError, fetch_status, render

    params = {
        key: str(value).lower() if isinstance(value, bool) else str(value)
        for key in ("service", "name", "firing", "sort", "limit")
        if (value := getattr(args, key)) is not None and value is not False
    }
    try:
        url = _admin_url(args)
        answer = fetch_status(url, timeout=args.timeout, params=params)
    except (ConfigError, StatusError) as exc:
        print(f"burnline slo status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        document = {"total": answer.total, "matched": answer.matched, "slos": answer.slos}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write(render(answer.slos, narrowed=bool(params.keys() - {"sort"})) + answer.footer())
    return 0


def rules(args: argparse.Namespace) -> int:
    from collector.slo.rules import RuleGenerationError, render_rules
    from collector.slo.spec import load_slos

    if not args.config and not args.files:
        print("burnline slo rules: give SLO files and/or -c config", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config) if args.config else None
        slos = load_slos(config, args.files)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not slos:
        print("burnline slo rules: no SLOs found", file=sys.stderr)
        return 1
    try:
        text = render_rules(slos, [*([args.config] if args.config else []), *args.files])
    except RuleGenerationError as exc:
        print(f"burnline slo rules: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def add_parser(subparsers: Any) -> None:
    """Adds ``slo`` (with ``status`` and ``rules``) to burnline's command line."""
    slo = subparsers.add_parser("slo", help="SLO status of a running burnline; Prometheus rules for SLOs")
    sub = slo.add_subparsers(dest="slo_command", required=True)

    st = sub.add_parser(
        "status",
        help="every SLO's objective, SLI, burn rates, budget and alerts (from a running burnline)",
        description="Asks a running burnline's admin server (/api/v1/slos) for the state of every SLO, "
        "or of those the filters select.",
    )
    st.add_argument("-c", "--config", help="config file: its service.admin.endpoint is asked")
    st.add_argument("--admin", metavar="HOST:PORT", help="the admin server to ask (overrides -c)")
    st.add_argument("--service", help="only SLOs of this service (* ? [] are wildcards)")
    st.add_argument("--name", help="only SLOs of this name (* ? [] are wildcards)")
    st.add_argument("--firing", action="store_true", help="only SLOs with a page or ticket alert firing")
    st.add_argument(
        "--sort",
        choices=("config", "budget"),
        help="configuration order (the default) or lowest error budget first",
    )
    st.add_argument("--limit", type=int, metavar="N", help="at most N SLOs")
    st.add_argument("--json", action="store_true", help="the API's JSON instead of the table")
    st.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer (default 10)")
    st.set_defaults(func=status)

    ru = sub.add_parser(
        "rules",
        help="print Prometheus recording and alerting rules (Sloth-compatible) for SLOs",
        description="Prints a Prometheus rule file for the SLOs of the config and/or the SLO files given "
        "(native or Sloth prometheus/v1). Check it with `promtool check rules`.",
    )
    ru.add_argument("files", nargs="*", help="SLO files (YAML)")
    ru.add_argument("-c", "--config", help="config file whose slos: and slo_files: to use")
    ru.set_defaults(func=rules)


def main(argv: list[str] | None = None) -> int:
    """``python -m collector.slo.cli status|rules ...``: the ``slo`` subcommand on its own."""
    parser = argparse.ArgumentParser(prog="burnline")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["slo", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
