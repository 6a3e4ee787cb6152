"""Likert answers as respondents give them, simulated from an instrument's
constructs (reliability, EFA and invariance tests share them)."""
import numpy as np
import pandas as pd

LOADINGS = [0.8, 0.75, 0.7, 0.65]


def make_responses(instrument, n=600, seed=7, missing_share=0.03):
    """Answers as a respondent gives them: reverse-keyed items answered reversed, some 9s."""
    rng = np.random.default_rng(seed)
    cuts = np.array([-1.5, -0.5, 0.5, 1.5])
    out = {}
    for c in instrument.latent_constructs:
        eta = rng.standard_normal(n)
        items = [i for i in instrument.items_of(c.id) if i.role == "item"]
        for k, item in enumerate(items):
            lam = LOADINGS[k % len(LOADINGS)]
            y = lam * eta + np.sqrt(1 - lam**2) * rng.standard_normal(n)
            code = 1 + np.searchsorted(cuts, y)
            if item.reverse:
                code = 6 - code
            code = np.where(rng.random(n) < missing_share, 9, code)
            out[item.id] = code
    return pd.DataFrame(out)
