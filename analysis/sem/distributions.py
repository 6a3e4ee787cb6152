"""The few distributions the engine uses on every fit, without importing scipy.

``import scipy.special`` costs about 0.15 s of a command's start-up and
``scipy.stats`` about 0.4 s, more than a whole lavaan-sized fit. The normal,
chi-square and noncentral chi-square distributions, which every fit prints
(p-values, confidence intervals, the RMSEA interval, Hoelter's N), are
computed here from their series and continued fractions in plain Python, with
scipy.stats' rules for invalid parameters (NaN) and for points outside the
support; tests/sem/test_distributions.py holds them to scipy's numbers. The F
distribution (pooled and reliability tests, never a plain fit) calls
``scipy.special`` when first used. Anything else (``distributions.t``,
``distributions.pearsonr``, ...) is scipy.stats itself, imported on first use::

    from analysis.sem import distributions as sps
    sps.chi2.sf(85.3, 24)     # as scipy.stats.chi2.sf
"""

from __future__ import annotations

import importlib
import math

import numpy as np

_EPS = 2.220446049250313e-16
_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_BIG = 1e300
# Stirling's series of log Gamma(a) - [(a - 1/2) log a - a + log sqrt(2 pi)]: B_2k / (2k (2k - 1))
_STIRLING = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156, -3617 / 122400)


def _finish(value):
    """A 0-d result as a numpy scalar, as scipy.stats returns it."""
    value = np.asarray(value, dtype=float)
    return value[()] if value.ndim == 0 else value


def _elementwise(kernel, *args):
    """``kernel`` (a function of Python floats) applied over the broadcast arguments."""
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in args))
    shape = arrays[0].shape
    flat = [a.ravel().tolist() for a in arrays]
    out = np.fromiter((kernel(*vals) for vals in zip(*flat)), dtype=float, count=int(np.prod(shape)))
    return out.reshape(shape)


# --------------------------------------------------------------------------- normal
def _ndtr(x: float) -> float:
    """Standard normal cdf; erfc keeps full relative precision in the lower tail."""
    if math.isnan(x):
        return math.nan
    if x < -1.0:
        return 0.5 * math.erfc(-x / _SQRT2)
    if x > 1.0:
        return 1.0 - 0.5 * math.erfc(x / _SQRT2)
    return 0.5 + 0.5 * math.erf(x / _SQRT2)


def _ndtri(p: float) -> float:
    """Standard normal quantile: a rational start refined by Halley's method on the tail
    (erfc) or, near the median, on erf, so that tiny and central probabilities both keep
    their relative precision."""
    if math.isnan(p) or p < 0.0 or p > 1.0:
        return math.nan
    if p == 0.0:
        return -math.inf
    if p == 1.0:
        return math.inf
    if p == 0.5:
        return 0.0
    if p > 0.5:
        return -_ndtri_lower(1.0 - p) if p > 0.75 else _ndtri_central(p - 0.5)
    return _ndtri_lower(p) if p < 0.25 else -_ndtri_central(0.5 - p)


def _ndtri_start(p: float) -> float:
    """Abramowitz & Stegun 26.2.23 (absolute error < 4.5e-4) for p < 0.5: the lower quantile."""
    t = math.sqrt(-2.0 * math.log(p))
    return -(t - (2.515517 + t * (0.802853 + t * 0.010328))
             / (1.0 + t * (1.432788 + t * (0.189269 + t * 0.001308))))


def _ndtri_lower(p: float) -> float:
    x = _ndtri_start(p)
    for _ in range(8):
        phi = math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        if phi == 0.0:
            break
        u = (0.5 * math.erfc(-x / _SQRT2) - p) / phi
        step = u / (1.0 + 0.5 * x * u)
        x -= step
        if abs(step) <= 1e-16 * abs(x):
            break
    return x


def _ndtri_central(d: float) -> float:
    """The x > 0 with Phi(x) - 1/2 = d (0 < d <= 1/4): erf keeps d's relative precision."""
    x = _ndtri_start(0.5 - d) * -1.0
    for _ in range(8):
        phi = math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        u = (0.5 * math.erf(x / _SQRT2) - d) / phi
        step = u / (1.0 + 0.5 * x * u)
        x -= step
        if abs(step) <= 1e-16 * abs(x):
            break
    return x


class _Normal:
    @staticmethod
    def cdf(x, loc=0.0, scale=1.0):
        return _finish(_elementwise(_ndtr, (np.asarray(x, float) - loc) / scale))

    @staticmethod
    def sf(x, loc=0.0, scale=1.0):
        return _finish(_elementwise(_ndtr, -(np.asarray(x, float) - loc) / scale))

    @staticmethod
    def ppf(q, loc=0.0, scale=1.0):
        return _finish(loc + scale * _elementwise(_ndtri, q))

    @staticmethod
    def isf(q, loc=0.0, scale=1.0):
        return _finish(loc - scale * _elementwise(_ndtri, q))

    @staticmethod
    def pdf(x, loc=0.0, scale=1.0):
        z = (np.asarray(x, float) - loc) / scale
        return _finish(np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi) / scale)


# --------------------------------------------------------------------------- incomplete gamma
def _log_gamma_density(a: float, x: float) -> float:
    """log(x^a e^-x / Gamma(a)), the factor in front of both incomplete-gamma expansions.

    For a >= 10 it is written around x = a with Stirling's series, so that no large
    logarithms cancel: a (log(x/a) - (x - a)/a) + log(a)/2 - log(sqrt(2 pi)) - stirling(a)."""
    if a < 10.0:
        return a * math.log(x) - x - math.lgamma(a)
    d = (x - a) / a
    core = math.log1p(d) - d if abs(d) < 0.5 else math.log(x / a) - d
    inv, inv2 = 1.0 / a, 1.0 / (a * a)
    corr, power = 0.0, inv
    for c in _STIRLING:
        corr += c * power
        power *= inv2
    return a * core + 0.5 * math.log(a) - _LOG_SQRT_2PI - corr


def _gamma_pq(a: float, x: float) -> tuple[float, float]:
    """Regularized incomplete gamma functions (P(a, x), Q(a, x)) for a > 0, x >= 0.

    Below x = a + 1 the power series of P converges fast; above it the continued
    fraction of Q (Legendre's, evaluated by the modified Lentz method). The other one is
    1 minus it, which loses nothing because it is then the larger of the two."""
    if x == 0.0:
        return 0.0, 1.0
    if math.isinf(x):
        return 1.0, 0.0
    log_pref = _log_gamma_density(a, x)
    if x < a + 1.0:
        term = total = 1.0 / a
        n = a
        for _ in range(100000):
            n += 1.0
            term *= x / n
            total += term
            if term < total * 1e-17:
                break
        p = math.exp(log_pref) * total if log_pref > -745.0 else 0.0
        return p, 1.0 - p
    # Q = pref / (x + 1 - a - 1 (1 - a) / (x + 3 - a - 2 (2 - a) / (x + 5 - a - ...)))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 100000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    q = math.exp(log_pref) * h if log_pref > -745.0 else 0.0
    return 1.0 - q, q


def _gamma_density(a: float, x: float) -> float:
    """d/dx P(a, x) = x^(a-1) e^-x / Gamma(a)."""
    return math.exp(_log_gamma_density(a, x)) / x


def _chi2_pq(df: float, x: float) -> tuple[float, float]:
    if math.isnan(df) or math.isnan(x) or not df > 0 or math.isinf(df):
        return math.nan, math.nan
    if x <= 0.0:
        return 0.0, 1.0
    return _gamma_pq(0.5 * df, 0.5 * x)


def _chi2_cdf(df: float, x: float) -> float:
    return _chi2_pq(df, x)[0]


def _chi2_sf(df: float, x: float) -> float:
    return _chi2_pq(df, x)[1]


def _gamma_inverse(a: float, p: float, q: float) -> float:
    """The x with P(a, x) = p (equivalently Q(a, x) = q = 1 - p).

    Newton's method on log P (p <= 1/2) or log Q (otherwise) in log x, kept inside a
    bracket that halves whenever a step would leave it: the smaller tail is matched, so
    tiny probabilities keep their relative precision."""
    if p <= 0.0:
        return 0.0
    if q <= 0.0:
        return math.inf
    lower = p <= 0.5
    target = math.log(p if lower else q)
    # Wilson-Hilferty start (a chi-square with 2a df, halved); the small-x power law in the lower tail
    z = _ndtri(p) if lower else -_ndtri(q)
    h = 1.0 / (9.0 * a)
    wh = 1.0 - h + z * math.sqrt(h)
    x = a * wh ** 3 if wh > 0 else 0.0
    if x <= 0.0 or (lower and a < 1.0):   # P(a, x) ~ x^a / Gamma(a + 1) for small x
        small = math.exp(min((math.log(p) + math.lgamma(a + 1.0)) / a, 700.0))
        x = small if x <= 0.0 else min(x, small)
    x = max(x, 1e-300)
    lo, hi = 0.0, math.inf
    for _ in range(200):
        pp, qq = _gamma_pq(a, x)
        tail = pp if lower else qq
        if tail <= 0.0:   # underflow: far outside; move toward the bulk
            if lower:
                lo = x
                x = x * 2.0 if hi == math.inf else 0.5 * (x + hi)
            else:
                hi = x
                x = 0.5 * (lo + x)
            continue
        g = math.log(tail) - target
        if g > 0:   # the tail is too large: x is too large (lower tail) or too small (upper)
            if lower:
                hi = x
            else:
                lo = x
        elif g < 0:
            if lower:
                lo = x
            else:
                hi = x
        else:
            return x
        dens = _gamma_density(a, x)
        slope = x * dens / tail * (1.0 if lower else -1.0)   # d log(tail) / d log x
        step = -g / slope if slope != 0.0 else math.copysign(50.0, g if not lower else -g)
        new = x * math.exp(max(-50.0, min(50.0, step)))   # a step in log x, at most e^50
        if not lo < new < hi:
            new = math.sqrt(lo) * math.sqrt(hi) if lo > 0 and math.isfinite(hi) else (
                x * 1e10 if not math.isfinite(hi) else 0.5 * (lo + hi))
        if abs(new - x) <= 4 * _EPS * x or (math.isfinite(hi) and hi - lo <= 4 * _EPS * hi):
            return new
        x = new
    return x


def _chi2_ppf(df: float, q: float) -> float:
    return 2.0 * _gamma_inverse(0.5 * df, q, 1.0 - q)


def _chi2_isf(df: float, q: float) -> float:
    return 2.0 * _gamma_inverse(0.5 * df, 1.0 - q, q)


def _positive(*params):
    """scipy.stats' argument check: a parameter outside its range gives NaN."""
    ok = np.ones(np.broadcast(*params).shape, dtype=bool)
    for p in params:
        ok &= np.isfinite(p) & (np.asarray(p) > 0)
    return ok


class _ChiSquare:
    @staticmethod
    def cdf(x, df):
        x, df = np.asarray(x, float), np.asarray(df, float)
        out = np.where(x <= 0, 0.0, _elementwise(_chi2_cdf, df, np.maximum(x, 0)))
        return _finish(np.where(_positive(df), out, np.nan))

    @staticmethod
    def sf(x, df):
        x, df = np.asarray(x, float), np.asarray(df, float)
        out = np.where(x <= 0, 1.0, _elementwise(_chi2_sf, df, np.maximum(x, 0)))
        return _finish(np.where(_positive(df) & ~np.isnan(x), out, np.nan))

    @staticmethod
    def ppf(q, df):
        q, df = np.asarray(q, float), np.asarray(df, float)
        ok = _positive(df) & (q >= 0) & (q <= 1)
        safe = np.where(ok, df, 1.0)
        return _finish(np.where(ok, _elementwise(_chi2_ppf, safe, np.clip(np.nan_to_num(q), 0, 1)), np.nan))

    @staticmethod
    def isf(q, df):
        q, df = np.asarray(q, float), np.asarray(df, float)
        ok = _positive(df) & (q >= 0) & (q <= 1)
        safe = np.where(ok, df, 1.0)
        return _finish(np.where(ok, _elementwise(_chi2_isf, safe, np.clip(np.nan_to_num(q), 0, 1)), np.nan))


# --------------------------------------------------------------------------- noncentral chi-square
def _ncx2_parts(x: float, df: float, nc: float) -> tuple[float, float, float]:
    """(cdf, sf, d cdf / d nc) of the noncentral chi-square as Poisson mixtures of central ones.

    cdf = sum_j w_j P(a + j, y), sf = sum_j w_j Q(a + j, y) with w_j the Poisson(nc / 2)
    weights, a = df / 2, y = x / 2. Only the weights that matter (down to e^-46 = 1e-20 of
    the largest) are summed. P is computed once at the top term and carried down with
    P(b, y) = P(b + 1, y) + t(b), Q once at the bottom and carried up with
    Q(b + 1, y) = Q(b, y) + t(b), t(b) = y^b e^-y / Gamma(b + 1): every step adds, nothing
    cancels. The derivative in nc is -1/2 sum_j w_j t(a + j)."""
    a, y, mu = 0.5 * df, 0.5 * x, 0.5 * nc
    if mu == 0.0:
        p, q = _gamma_pq(a, y)
        return p, q, -0.5 * math.exp(_log_gamma_density(a + 1.0, y)) / y if y > 0 else 0.0
    mode = int(mu)
    half = int(math.sqrt(92.0 * mu) + 30)     # (j - mu)^2 / (2 mu) > 46 beyond it
    j = np.arange(max(mode - half, 0), mode + half + 1, dtype=float)
    # log weights and log terms by their ratios from the mode, where lgamma anchors them
    k = int(mode - j[0])
    log_w = np.empty_like(j)
    log_w[k] = -mu + mode * math.log(mu) - math.lgamma(mode + 1.0)
    log_w[k + 1:] = log_w[k] + np.cumsum(math.log(mu) - np.log(j[k + 1:]))
    log_w[:k] = log_w[k] - np.cumsum((math.log(mu) - np.log(j[1:k + 1]))[::-1])[::-1]
    keep = log_w > log_w[k] - 46.0
    j, log_w = j[keep], log_w[keep]
    lo, hi = float(j[0]), float(j[-1])
    weights = np.exp(log_w)
    if y > 0:
        log_y = math.log(y)
        log_t0 = (a + lo) * log_y - y - math.lgamma(a + lo + 1.0)
        log_t = log_t0 + np.concatenate(([0.0], np.cumsum(log_y - np.log(a + j[1:]))))
        terms = np.exp(np.minimum(log_t, 0.0))
    else:
        terms = np.zeros_like(j)
    p = _gamma_pq(a + hi, y)[0] + np.concatenate((np.cumsum(terms[:-1][::-1])[::-1], [0.0]))
    q = _gamma_pq(a + lo, y)[1] + np.concatenate(([0.0], np.cumsum(terms[:-1])))
    cdf = float(weights @ np.minimum(p, 1.0))
    sf = float(weights @ np.minimum(q, 1.0))
    deriv = -0.5 * float(weights @ terms)
    return min(cdf, 1.0), min(sf, 1.0), deriv


def _ncx2_cdf(x: float, df: float, nc: float) -> float:
    if math.isnan(x) or math.isnan(df) or math.isnan(nc):
        return math.nan
    if math.isinf(x):
        return 1.0
    return _ncx2_parts(x, df, nc)[0]


def _ncx2_sf(x: float, df: float, nc: float) -> float:
    if math.isnan(x) or math.isnan(df) or math.isnan(nc):
        return math.nan
    if math.isinf(x):
        return 0.0
    return _ncx2_parts(x, df, nc)[1]


def _noncentrality(x: float, df: float, p: float) -> float:
    """The nc >= 0 with cdf(x, df, nc) = p: Newton's method on the decreasing cdf, inside a
    bracket (bisection when a step leaves it). 0 when even nc = 0 gives a cdf below p."""
    if math.isnan(x) or math.isnan(df) or math.isnan(p) or not df > 0 or not 0.0 < p < 1.0 or x <= 0:
        return math.nan
    if _gamma_pq(0.5 * df, 0.5 * x)[0] <= p:
        return 0.0
    lo, hi = 0.0, max(x - df, 1.0)
    while _ncx2_parts(x, df, hi)[0] > p:
        lo, hi = hi, 2.0 * hi
        if hi > 1e12:
            return math.nan
    lam = 0.5 * (lo + hi)
    for _ in range(200):
        cdf, _, deriv = _ncx2_parts(x, df, lam)
        g = cdf - p
        if g > 0:
            lo = lam
        elif g < 0:
            hi = lam
        else:
            return lam
        new = lam - g / deriv if deriv < 0 else math.nan
        if not (lo < new < hi):
            new = 0.5 * (lo + hi)
        if abs(new - lam) <= 1e-15 * max(lam, 1e-300) or hi - lo <= 4 * _EPS * hi:
            return new
        lam = new
    return lam


class _NoncentralChiSquare:
    """Noncentral chi-square; a noncentrality of 0 is the central distribution, as in scipy.stats."""

    @staticmethod
    def _tail(one, at_zero, x, df, nc):
        """``one`` (the lower or upper tail of one point) elementwise; ``at_zero`` for x <= 0, NaN
        where df or nc is invalid."""
        x, df, nc = (np.asarray(a, float) for a in (x, df, nc))
        ok = _positive(df) & np.isfinite(nc) & (nc >= 0)
        out = _elementwise(one, np.maximum(x, 0), np.where(ok, df, 1.0), np.where(ok, np.maximum(nc, 0), 0.0))
        return _finish(np.where(ok, np.where(x <= 0, at_zero, out), np.nan))

    @classmethod
    def cdf(cls, x, df, nc):
        return cls._tail(_ncx2_cdf, 0.0, x, df, nc)

    @classmethod
    def sf(cls, x, df, nc):
        return cls._tail(_ncx2_sf, 1.0, x, df, nc)

    @staticmethod
    def noncentrality(x, df, p):
        """The noncentrality at which ``cdf(x, df, nc) == p`` (the root lavaan's RMSEA interval seeks)."""
        return _finish(_elementwise(_noncentrality, x, df, p))


# --------------------------------------------------------------------------- F (scipy.special, on first use)
def _special():
    return importlib.import_module("scipy.special")


class _F:
    @staticmethod
    def cdf(x, dfn, dfd):
        x, dfn, dfd = (np.asarray(a, float) for a in (x, dfn, dfd))
        out = np.where(x <= 0, 0.0, _special().fdtr(dfn, dfd, np.maximum(x, 0)))
        return _finish(np.where(_positive(dfn, dfd), out, np.nan))

    @staticmethod
    def sf(x, dfn, dfd):
        x, dfn, dfd = (np.asarray(a, float) for a in (x, dfn, dfd))
        out = np.where(x <= 0, 1.0, _special().fdtrc(dfn, dfd, np.maximum(x, 0)))
        return _finish(np.where(_positive(dfn, dfd), out, np.nan))

    @staticmethod
    def ppf(q, dfn, dfd):
        q, dfn, dfd = (np.asarray(a, float) for a in (q, dfn, dfd))
        ok = _positive(dfn, dfd) & (q >= 0) & (q <= 1)
        return _finish(np.where(ok, _special().fdtri(dfn, dfd, np.clip(q, 0, 1)), np.nan))

    @classmethod
    def isf(cls, q, dfn, dfd):
        return cls.ppf(1.0 - np.asarray(q, float), dfn, dfd)


norm = _Normal()
chi2 = _ChiSquare()
ncx2 = _NoncentralChiSquare()
f = _F()


def __getattr__(name):  # everything else is scipy.stats, imported when first needed
    if name.startswith("__"):  # the import system probing (__path__, ...), not a distribution
        raise AttributeError(name)
    return getattr(importlib.import_module("scipy.stats"), name)
