"""The ``burnline`` command: run, validate, config, logs, traces."""

from __future__ import annotations

import argparse
import asyncio
import sys

from collector import __version__
from collector.config import ConfigError, load_config, unused_components
from collector.core.logsetup import configure_logging


def _run(args: argparse.Namespace) -> int:
    from collector.core.service import Service

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    from collector.workers.cores import resolve_workers
    from collector.workers.worker import worker_from_environment

    worker = worker_from_environment()
    configure_logging(
        args.log_level or config.service.log_level,
        config.service.log_format,
        worker=worker[0].index if worker else None,
    )
    # Start-up failures (a port in use, a data directory that is a file) are logged by the service as
    # one line naming the component and the setting; this is the net for anything it did not name.
    try:
        if worker is not None:
            from collector.workers.worker import run_worker

            return asyncio.run(run_worker(config, *worker))
        count = resolve_workers(config.service.workers)
        if count > 1:
            from collector.workers.supervisor import Supervisor

            return asyncio.run(Supervisor(config, count, args.log_level).run())
        return asyncio.run(Service(config).run())
    except OSError as exc:
        print(f"burnline: cannot start: {exc}", file=sys.stderr)
        return 1


def _validate(args: argparse.Namespace) -> int:
    from collector.slo.spec import load_slos

    try:
        config = load_config(args.config)
        # The SLOs too: slo_files are read and checked as `run` would at start.
        slos = load_slos(config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    from collector.workers.cores import resolve_workers
    from collector.workers.supervisor import unshareable

    # What the supervisor would refuse at start with several workers, refused now.
    problems = unshareable(config) if resolve_workers(config.service.workers) > 1 else []
    if problems:
        for problem in problems:
            print(f"{config.source}: {problem}", file=sys.stderr)
        return 1
    counts = (
        f"{len(config.receivers)} receiver(s), {len(config.processors)} processor(s), "
        f"{len(config.exporters)} exporter(s), {len(config.service.pipelines)} pipeline(s), "
        f"{len(slos)} SLO(s)"
    )
    print(f"{config.source}: valid ({counts})")
    # What `run` would warn about at start, said now: a component no pipeline lists is not started.
    for path in unused_components(config):
        print(
            f"{config.source}: warning: {path}: no pipeline uses it; `run` will not start it", file=sys.stderr
        )
    return 0


def _config(args: argparse.Namespace) -> int:
    from collector.config.effective import effective_yaml

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    sys.stdout.write(effective_yaml(config))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="burnline", description=__doc__)
    parser.add_argument("--version", action="version", version=f"burnline {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the service (the built-in default config without -c)")
    run.add_argument("-c", "--config", help="config file (YAML); default: the built-in config")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=_run)

    validate = sub.add_parser(
        "validate",
        help="check a config file; exit 1 when invalid",
        description="Checks a config file: exit 1 listing every problem when it is invalid; exit 0 when it "
        "is valid, with a warning on stderr for each component that no pipeline uses.",
    )
    validate.add_argument("-c", "--config", required=True, help="config file (YAML)")
    validate.set_defaults(func=_validate)

    config = sub.add_parser(
        "config",
        help="print the effective config as YAML (defaults filled in, secrets masked)",
        description="Prints the configuration burnline would run with, as YAML: variables substituted, "
        "every default filled in (durations in seconds, sizes in bytes), and the value of every "
        "secret (SecretStr settings, keys like password, api_key, token, authorization, bearer) "
        "masked. Exit 1 when the config is invalid.",
    )
    config.add_argument("-c", "--config", help="config file (YAML); default: the built-in config")
    config.set_defaults(func=_config)

    from collector.query import commands as query_commands

    query_commands.add_parser(sub)

    from collector.slo import cli as slo_cli

    slo_cli.add_parser(sub)

    from collector.demo import cli as demo_cli

    demo_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        # The admin /metrics without a `_created` twin for every counter, histogram and summary:
        # twice the series for a start time that process_start_time_seconds already gives. Only
        # for `run`: the switch is process-wide and other commands do not serve metrics.
        from prometheus_client import disable_created_metrics

        disable_created_metrics()  # type: ignore[no-untyped-call]
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
