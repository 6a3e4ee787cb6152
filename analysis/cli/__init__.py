"""The `resilience` command line: a thin layer over the Python API (no statistics here)."""
