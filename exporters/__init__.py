"""burnline exporters: the components that deliver batches to backends.

The modules register themselves when imported; collector.components.load_builtin_components imports
them all, so that a command that needs none of them (``burnline logs``) starts fast.
"""

# Importing the collector package runs collector.compiled.guard(), which must come before any of
# exporters.elasticsearch's compiled modules is imported; a second call would only hash the sources again.
import collector  # noqa: F401
