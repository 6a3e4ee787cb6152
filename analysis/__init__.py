"""Statistics of the suite: SEM engine with lavaan parity, psychometrics, reports.

``from analysis import fit_sem`` (alias ``cfa``; ``analysis.sem.sem`` too)
fits a model in lavaan syntax; see ``docs/engine.md`` for the engine's layout.
"""

import importlib

__all__ = ["fit_sem", "cfa"]


def __getattr__(name):  # lazy: importing the package stays cheap
    if name in __all__:
        return getattr(importlib.import_module("analysis.sem"), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
