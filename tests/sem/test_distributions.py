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


def test_a_plain_ml_fit_from_the_command_line_imports_no_scipy_at_all():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; from analysis.cli.main import app\n"
        f"sys.argv = ['resilience', 'fit', {str(root / 'tests/fixtures/data/HolzingerSwineford1939.csv')!r},"
        f" '--model', {str(root / 'analysis/models/hs.lav')!r}, '--json']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m == 'scipy' or m.startswith('scipy.')), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert '"rmsea.ci.lower": 0.0714' in out.stdout
    assert out.stderr.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("x2,df", [(85.3055, 24), (400.0, 100), (30.0, 24), (1500.0, 300)])
def test_noncentrality_is_the_root_of_the_noncentral_cdf(x2, df):
    from scipy.optimize import brentq

    for p in (0.95, 0.05):
        if stats.chi2.cdf(x2, df) < p:
            continue  # no root above 0: rmsea_ci reports 0 there
        root = brentq(lambda lam: stats.ncx2.cdf(x2, df, lam) - p, 1e-12, 4 * x2, xtol=1e-12)
        assert d.ncx2.noncentrality(x2, df, p) == pytest.approx(root, rel=1e-10)


def test_chi_square_on_a_dense_grid_matches_scipy_to_1e_10():
    """Random points across the support and the degrees of freedom a model can have (up to
    5,000: a 100-item model), including both tails and the bulk, where the series and the
    continued fraction meet."""
    rng = np.random.default_rng(20261206)
    for df in [0.1, 0.5, 1, 2, 5, 9.5, 10, 24, 99.5, 300, 1500, 5000]:
        x = np.concatenate([10 ** rng.uniform(-10, 4, 200), df + rng.normal(0, 1, 50) * np.sqrt(2 * df)])
        x = x[x > 0]
        for name in ("sf", "cdf"):
            np.testing.assert_allclose(getattr(d.chi2, name)(x, df), getattr(stats.chi2, name)(x, df),
                                       rtol=1e-10, atol=1e-300, err_msg=f"chi2.{name} df={df}")
        q = np.concatenate([rng.uniform(0, 1, 100), 10 ** rng.uniform(-250, -1, 50),
                            1 - 10 ** rng.uniform(-15, -1, 50)])
        for name in ("ppf", "isf"):
            np.testing.assert_allclose(getattr(d.chi2, name)(q, df), getattr(stats.chi2, name)(q, df),
                                       rtol=1e-10, atol=1e-290, err_msg=f"chi2.{name} df={df}")


def test_normal_quantile_keeps_its_relative_precision_near_the_median_and_in_the_tails():
    q = np.array([0.5 + 1e-10, 0.5 - 1e-10, 0.25, 0.75, 1e-300, 1e-30, 1 - 1e-15, 0.3, 0.7])
    np.testing.assert_allclose(d.norm.ppf(q), stats.norm.ppf(q), rtol=1e-12)
    z = np.random.default_rng(7).normal(0, 4, 500)
    np.testing.assert_allclose(d.norm.sf(z), stats.norm.sf(z), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("df", [1, 24, 700])
@pytest.mark.parametrize("nc", [0.01, 40.0, 2000.0])
def test_noncentral_chi_square_around_its_bulk_matches_scipy(df, nc):
    """The large noncentralities of a big model's RMSEA p-values (N * df * 0.05^2)."""
    x = (df + nc) + np.linspace(-4, 4, 17) * np.sqrt(2 * (df + 2 * nc))
    x = x[x > 0]
    np.testing.assert_allclose(d.ncx2.cdf(x, df, nc), stats.ncx2.cdf(x, df, nc), rtol=1e-10, atol=1e-14)
    sf = stats.ncx2.sf(x, df, nc)
    np.testing.assert_allclose(d.ncx2.sf(x, df, nc), sf, rtol=1e-10, atol=1e-14)


def test_noncentrality_without_a_positive_root_is_zero_and_large_models_have_theirs():
    from scipy import special as sc

    assert d.ncx2.noncentrality(30.0, 24, 0.95) == 0.0    # chi2.cdf(30, 24) < 0.95
    for x2, df in [(5000.0, 700), (3000.0, 2000)]:
        for p in (0.95, 0.05):
            assert d.ncx2.noncentrality(x2, df, p) == pytest.approx(sc.chndtrinc(x2, df, p), rel=1e-10)
