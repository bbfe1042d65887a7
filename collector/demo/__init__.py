"""``burnline demo``: burnline at work in one command, with nothing else installed.

- scenario.py: the demo services, their SLOs, the checkout incident and the alert math;
- clients.py: Fluent Forward and OTLP/HTTP clients, as the services' agents would speak;
- traffic.py: the traffic generator (spans, logs, and each service's ``/metrics``);
- config.py: the built-in default config plus scraping, the demo SLOs and alerting;
- runner.py: burnline and the generator in one event loop, until --duration or Ctrl-C;
- view.py: the live terminal view, progress lines and the summary;
- cli.py: the ``demo`` subcommand.
"""
