"""Normalization: turning each input format's records into the one data model."""
