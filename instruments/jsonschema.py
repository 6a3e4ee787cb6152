"""JSON Schema of the instrument format, for editor completion and checks.

Editors that understand JSON Schema for YAML (VS Code with the YAML extension,
JetBrains IDEs) complete field names and flag typos when a file starts with::

    # yaml-language-server: $schema=../schema/instrument.schema.json

The shipped copy ``instruments/schema/instrument.schema.json`` is regenerated
by ``resilience instrument schema -o FILE``; a test keeps it in step with the
pydantic models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from instruments.schema import Instrument

__all__ = ["instrument_json_schema", "instrument_json_schema_text", "SCHEMA_PATH", "SCHEMA_ID"]

SCHEMA_PATH = Path(__file__).parent / "schema" / "instrument.schema.json"
SCHEMA_ID = "https://github.com/community-resilience/suite/instruments/schema/instrument.schema.json"


def instrument_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an instrument YAML file."""
    schema = Instrument.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "Survey instrument (community resilience suite)",
        "description": (
            "A questionnaire definition: metadata, languages, response scales, constructs "
            "and sections of items. Cross-references (scale and construct ids, relevance "
            "conditions, translations) are checked by `resilience instrument validate`."
        ),
    }


def instrument_json_schema_text() -> str:
    return json.dumps(instrument_json_schema(), indent=2, ensure_ascii=False) + "\n"
