"""An instrument's items as the analyses need them: missing codes to NA,
reverse keys applied, the constructs and their scale items, and the data of a
model's variables (``instrument_model_data``). Every analysis that starts from
an instrument (reliability, EFA, invariance, ``resilience fit --instrument``)
recodes through here, which rests on :func:`instruments.score.clean_items`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from analysis.errors import ReliabilityError

__all__ = ["recode_items", "construct_ids", "items_of", "is_latent", "instrument_model_data"]


def recode_items(data: pd.DataFrame, instrument: Any, items: Sequence[str] | None = None) -> pd.DataFrame:
    """Missing codes to NA, out-of-scale values to NA, reverse-keyed items reversed.

    :func:`instruments.score.clean_items` does it (the suite's one recoding:
    missing codes first, then the i-th smallest code to the i-th largest); this
    adds the default item set (every item of every construct) and the error
    naming item columns the data lack. Returns a float copy of ``items``.
    """
    from instruments.score import clean_items

    if items is None:
        items = [i for c in construct_ids(instrument) for i in items_of(instrument, c)]
    absent = [i for i in items if i not in data.columns]
    if absent:
        raise ReliabilityError(f"The data lack item column(s) the instrument defines: {', '.join(absent)}.")
    return clean_items(data, instrument, list(items)).astype(float)


def construct_ids(instrument: Any) -> list[str]:
    """The ids of an instrument's constructs, in its order."""
    cons = instrument.constructs
    if isinstance(cons, Mapping):
        cons = list(cons.values()) if not all(isinstance(k, str) for k in cons) else list(cons)
    ids = [getattr(c, "id", c) for c in cons]
    return [str(i) for i in ids if items_of(instrument, str(i))]


def items_of(instrument: Any, construct: str) -> list[str]:
    """The scale items of a construct."""
    # attention checks or REPR indicators tagged with a construct are not scale items
    return [getattr(i, "id", i) for i in instrument.items_of(construct) if getattr(i, "role", "item") == "item"]


def is_latent(instrument: Any, construct: str) -> bool:
    """Whether a construct is measured as a latent variable (a reflective scale)."""
    for c in instrument.constructs if not isinstance(instrument.constructs, Mapping) else instrument.constructs.values():
        if getattr(c, "id", None) == construct:
            kind = getattr(c, "kind", None) or getattr(c, "type", None) or "latent"
            return str(kind).lower() not in ("observed", "index", "count")
    return True


def instrument_model_data(data: pd.DataFrame, instrument, model) -> pd.DataFrame:
    """The data of a model's variables as the instrument defines them.

    ``model``: lavaan syntax, or the model's observed variable names when the caller has
    parsed it already (the command line parses a model once).

    The model's items get missing codes as NA and reverse keys applied (left
    raw, "prefer not to say" = -9 would enter the covariances as an answer),
    and observed constructs of the model that the data lack (``REPR``, a count
    of Yes answers) are scored as the instrument says. Other columns are kept.
    """
    if isinstance(model, str):
        from analysis.sem.partable import build_partable, observed_names

        observed = list(observed_names(build_partable(model)))
    else:
        observed = [str(v) for v in model]
    items = [v for v in observed if v in set(instrument.item_ids)]
    out = data.copy()
    if items:
        out[items] = recode_items(data, instrument, items)
    scores = [c.id for c in instrument.constructs
              if c.kind == "observed" and c.id in observed and c.id not in data.columns]
    if scores:
        from instruments.score import clean_items, score_columns

        out[scores] = score_columns(clean_items(data, instrument), instrument)[scores]
    return out
