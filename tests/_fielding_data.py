"""Hand-made responses in the shape of an instrument (for the fielding tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_responses(inst, n: int = 60, seed: int = 1, *, missing: float = 0.1) -> pd.DataFrame:
    """Answers for every item: codes with some missing codes, blanks in optional items,
    consent refusals (then everything after consent is skipped, as relevance says),
    an interview language consistent with the LANG item, timings and a text item
    holding a formula-like answer."""
    rng = np.random.default_rng(seed)
    consent = np.where(rng.random(n) < 0.9, 1.0, 0.0)
    lang = np.where(consent == 1, rng.choice(inst.languages, size=n), inst.default_language)
    data = {
        "respondent_id": [f"R{i:04d}" for i in range(n)],
        "form_version": ["2025011501"] * n,
        "language": lang,
        "submitted_at": pd.Timestamp("2025-02-01 10:00") + pd.to_timedelta(rng.integers(0, 86400 * 20, n), unit="s"),
        "duration_s": rng.integers(60, 1800, n).astype(float),
    }
    for it in inst.items:
        scale = inst.scales[it.scale]
        if it.id == "CONSENT":
            v = consent
        elif it.id == "LANG":
            v = np.array([inst.languages.index(x) + 1 for x in lang], dtype=float)
        elif scale.type == "text":
            v = pd.Series(rng.choice(["Northfield", '=HYPERLINK("x")', "Old Town, east", "Ähm ūr"], n), dtype="string")
        else:
            codes = scale.codes + scale.missing_codes
            p = np.array([1.0] * len(scale.codes) + [0.3] * len(scale.missing_codes))
            v = rng.choice(codes, size=n, p=p / p.sum()).astype(float)
            if not it.required:
                v[rng.random(n) < missing] = np.nan
        if it.relevant:
            v = pd.Series(v).where(consent == 1)
        data[it.id] = v
    return pd.DataFrame(data)
