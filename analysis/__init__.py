"""Statistics of the suite: SEM engine with lavaan parity, psychometrics, reports.

``from analysis import fit_sem`` (aliases ``sem``, ``cfa``) fits a model in
lavaan syntax; see ``docs/engine.md`` for the engine's layout.
"""

__all__ = ["fit_sem", "sem", "cfa"]


def __getattr__(name):  # lazy: importing the package stays cheap
    if name in __all__:
        from . import sem as _sem

        return getattr(_sem, name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
