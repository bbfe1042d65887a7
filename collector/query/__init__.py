"""Helpers of the query commands (``burnline logs``, ``burnline traces``): times, terminal output."""
