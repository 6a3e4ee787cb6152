"""analysis.sem.distributions gives scipy.stats' numbers without importing it (a faster command line)."""

import numpy as np
import pytest
from scipy import stats

from analysis.sem import distributions as d

X = np.array([-1.0, 0.0, 1e-8, 0.3, 1.0, 3.84, 24.0, 85.3, 400.0, np.inf, np.nan])
Q = np.array([0.0, 1e-12, 0.025, 0.5, 0.95, 0.975, 1 - 1e-12, 1.0])
DF = [0.5, 1, 3, 24, 300]


def _same(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300, equal_nan=True)


@pytest.mark.parametrize("df", DF)
def test_chi_square_matches_scipy_stats(df):
    _same(d.chi2.sf(X, df), stats.chi2.sf(X, df))
    _same(d.chi2.cdf(X, df), stats.chi2.cdf(X, df))
    _same(d.chi2.ppf(Q, df), stats.chi2.ppf(Q, df))
    _same(d.chi2.isf(Q, df), stats.chi2.isf(Q, df))


def test_invalid_degrees_of_freedom_give_nan_as_scipy_stats():
    for df in (0, -1, np.nan):
        assert np.isnan(d.chi2.sf(3.0, df)) and np.isnan(stats.chi2.sf(3.0, df))
        assert np.isnan(d.ncx2.cdf(3.0, df, 1.0))
    assert np.isnan(d.chi2.ppf(1.5, 3))


@pytest.mark.parametrize("nc", [0.0, 0.5, 12.0, 150.0])
@pytest.mark.parametrize("df", [1, 24, 300])
def test_noncentral_chi_square_matches_scipy_stats(df, nc):
    x = X[np.isfinite(X)]
    np.testing.assert_allclose(d.ncx2.cdf(x, df, nc), stats.ncx2.cdf(x, df, nc), rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(d.ncx2.sf(x, df, nc), stats.ncx2.sf(x, df, nc), rtol=1e-7, atol=1e-14)


def test_normal_and_f_match_scipy_stats():
    z = np.array([-40.0, -3.0, -1.96, 0.0, 0.5, 1.96, 8.0, np.inf, np.nan])
    _same(d.norm.cdf(z), stats.norm.cdf(z))
    _same(d.norm.sf(z), stats.norm.sf(z))
    _same(d.norm.pdf(z), stats.norm.pdf(z))
    _same(d.norm.ppf(Q), stats.norm.ppf(Q))
    _same(d.norm.isf(Q), stats.norm.isf(Q))
    _same(d.norm.ppf(0.975, loc=1, scale=2), stats.norm.ppf(0.975, loc=1, scale=2))
    for dfn, dfd in [(1, 10), (3, 200), (12, 2)]:
        _same(d.f.isf(Q[1:-1], dfn, dfd), stats.f.isf(Q[1:-1], dfn, dfd))
        _same(d.f.sf(X, dfn, dfd), stats.f.sf(X, dfn, dfd))
        _same(d.f.cdf(X, dfn, dfd), stats.f.cdf(X, dfn, dfd))


def test_scalars_stay_numpy_scalars_and_other_names_fall_back_to_scipy_stats():
    assert isinstance(d.chi2.sf(3.0, 2), np.floating)
    assert d.t is stats.t


def test_a_fit_from_the_command_line_does_not_import_scipy_stats():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; from analysis.cli.main import app\n"
        f"sys.argv = ['resilience', 'fit', {str(root / 'tests/fixtures/data/HolzingerSwineford1939.csv')!r},"
        f" '--model', {str(root / 'analysis/models/hs.lav')!r}, '--json']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print('scipy.stats' in sys.modules, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert '"chisq": 85.30' in out.stdout
    assert out.stderr.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("x2,df", [(85.3055, 24), (400.0, 100), (30.0, 24), (1500.0, 300)])
def test_noncentrality_is_the_root_of_the_noncentral_cdf(x2, df):
    from scipy.optimize import brentq

    for p in (0.95, 0.05):
        if stats.chi2.cdf(x2, df) < p:
            continue  # no root above 0: rmsea_ci reports 0 there
        root = brentq(lambda lam: stats.ncx2.cdf(x2, df, lam) - p, 1e-12, 4 * x2, xtol=1e-12)
        assert d.ncx2.noncentrality(x2, df, p) == pytest.approx(root, rel=1e-10)
