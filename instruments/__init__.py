"""Questionnaire definitions: one YAML instrument drives fielding, scoring and models.

    >>> from instruments import load_instrument
    >>> inst = load_instrument("crs")          # the shipped Community Resilience Survey
    >>> inst.construct_ids[:3]
    ['CULT', 'PART', 'TRUST']
"""

from instruments.errors import InstrumentError, InstrumentIssue, InstrumentReport, InstrumentWarning
from instruments.load import library_instruments, library_path, load_instrument, parse_instrument, validate_instrument
from instruments.schema import Category, Construct, Instrument, Item, Scale, Section

# the package's surface: the loaders (instruments.load), the model's classes, the errors
__all__ = ["load_instrument", "validate_instrument", "parse_instrument", "library_path", "library_instruments",
           "Instrument", "Item", "Scale", "Category", "Construct", "Section",
           "InstrumentError", "InstrumentIssue", "InstrumentReport", "InstrumentWarning"]
