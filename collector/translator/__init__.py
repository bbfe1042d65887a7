"""Translations between burnline's data model (OpenTelemetry semantics) and other systems' names."""
