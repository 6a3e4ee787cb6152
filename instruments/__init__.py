"""Questionnaire definitions: one YAML instrument drives fielding, scoring and models.

    >>> from instruments import load_instrument
    >>> inst = load_instrument("crs")          # the shipped Community Resilience Survey
    >>> inst.construct_ids[:3]
    ['CULT', 'PART', 'TRUST']
"""

import importlib

from instruments.errors import InstrumentError, InstrumentIssue, InstrumentReport, InstrumentWarning

# the package's surface: the loaders (instruments.load), the model's classes, the errors
__all__ = ["load_instrument", "validate_instrument", "parse_instrument", "library_path", "library_instruments",
           "Instrument", "Item", "Scale", "Category", "Construct", "Section",
           "InstrumentError", "InstrumentIssue", "InstrumentReport", "InstrumentWarning"]

# Loaders and classes are imported on first use: the schema's pydantic models cost ~0.2 s, which
# every `resilience` command would pay (its instrument commands live in instruments.cli).
_WHERE = {**dict.fromkeys(["load_instrument", "validate_instrument", "parse_instrument", "library_path",
                           "library_instruments"], "instruments.load"),
          **dict.fromkeys(["Instrument", "Item", "Scale", "Category", "Construct", "Section"],
                          "instruments.schema")}


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        if name.startswith("__"):
            raise AttributeError(name)
        try:    # a submodule used as an attribute (instruments.schema.Item)
            return importlib.import_module(f"instruments.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"instruments.{name}":
                raise
            raise AttributeError(f"module 'instruments' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
