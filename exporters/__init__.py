"""burnline exporters: the components that deliver batches to backends.

The modules register themselves when imported; collector.components.load_builtin_components imports
them all, so that a command that needs none of them (``burnline logs``) starts fast.
"""

from collector.compiled import guard

# Before exporters.elasticsearch's compiled modules can be imported (collector/compiled.py).
guard()
