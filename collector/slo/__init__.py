"""In-stream SLOs: specs, counting, burn rates, alerts to Alertmanager, Sloth-compatible rules.

The config model types ``slos:`` with ``collector.slo.spec.SLOSpec``, and the spec uses the config's
value types: importing the config package first, here, makes either import order work.
"""

import collector.config  # noqa: F401  (import order, see above)
