"""The few distributions the engine uses on every fit, without importing scipy.stats.

``import scipy.stats`` costs about 0.4 s, more than a whole lavaan-sized fit,
and every command that prints a p-value would pay it. The normal, chi-square,
noncentral chi-square and F distributions are thin wrappers over the same
``scipy.special`` functions that scipy.stats calls, with scipy.stats' rules
for invalid parameters (NaN) and for points outside the support. Anything
else (``distributions.t``, ``distributions.pearsonr``, ...) is scipy.stats
itself, imported on first use::

    from analysis.sem import distributions as sps
    sps.chi2.sf(85.3, 24)     # as scipy.stats.chi2.sf
"""

from __future__ import annotations

import importlib

import numpy as np
from scipy import special as sc


def _finish(value):
    """A 0-d result as a numpy scalar, as scipy.stats returns it."""
    value = np.asarray(value, dtype=float)
    return value[()] if value.ndim == 0 else value


class _Normal:
    @staticmethod
    def cdf(x, loc=0.0, scale=1.0):
        return _finish(sc.ndtr((np.asarray(x, float) - loc) / scale))

    @staticmethod
    def sf(x, loc=0.0, scale=1.0):
        return _finish(sc.ndtr(-(np.asarray(x, float) - loc) / scale))

    @staticmethod
    def ppf(q, loc=0.0, scale=1.0):
        return _finish(loc + scale * sc.ndtri(np.asarray(q, float)))

    @staticmethod
    def isf(q, loc=0.0, scale=1.0):
        return _finish(loc - scale * sc.ndtri(np.asarray(q, float)))

    @staticmethod
    def pdf(x, loc=0.0, scale=1.0):
        z = (np.asarray(x, float) - loc) / scale
        return _finish(np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi) / scale)


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
        out = np.where(x <= 0, 0.0, sc.chdtr(df, np.maximum(x, 0)))
        return _finish(np.where(_positive(df), out, np.nan))

    @staticmethod
    def sf(x, df):
        x, df = np.asarray(x, float), np.asarray(df, float)
        out = np.where(x <= 0, 1.0, sc.chdtrc(df, np.maximum(x, 0)))
        return _finish(np.where(_positive(df) & ~np.isnan(x), out, np.nan))

    @staticmethod
    def ppf(q, df):
        q, df = np.asarray(q, float), np.asarray(df, float)
        ok = _positive(df) & (q >= 0) & (q <= 1)
        return _finish(np.where(ok, 2 * sc.gammaincinv(df / 2, np.clip(q, 0, 1)), np.nan))

    @staticmethod
    def isf(q, df):
        q, df = np.asarray(q, float), np.asarray(df, float)
        ok = _positive(df) & (q >= 0) & (q <= 1)
        return _finish(np.where(ok, sc.chdtri(df, np.clip(q, 0, 1)), np.nan))


class _NoncentralChiSquare:
    """Noncentral chi-square; a noncentrality of 0 is the central distribution, as in scipy.stats."""

    @staticmethod
    def cdf(x, df, nc):
        x, df, nc = (np.asarray(a, float) for a in (x, df, nc))
        ok = _positive(df) & np.isfinite(nc) & (nc >= 0)
        xx = np.maximum(x, 0)
        out = np.where(nc != 0, sc.chndtr(xx, df, np.maximum(nc, 0)), sc.chdtr(df, xx))
        return _finish(np.where(ok, np.where(x <= 0, 0.0, out), np.nan))

    @classmethod
    def sf(cls, x, df, nc):
        return _finish(1.0 - np.asarray(cls.cdf(x, df, nc)))

    @staticmethod
    def noncentrality(x, df, p):
        """The noncentrality at which ``cdf(x, df, nc) == p`` (the root lavaan's RMSEA interval seeks)."""
        return _finish(sc.chndtrinc(np.asarray(x, float), np.asarray(df, float), np.asarray(p, float)))


class _F:
    @staticmethod
    def cdf(x, dfn, dfd):
        x, dfn, dfd = (np.asarray(a, float) for a in (x, dfn, dfd))
        out = np.where(x <= 0, 0.0, sc.fdtr(dfn, dfd, np.maximum(x, 0)))
        return _finish(np.where(_positive(dfn, dfd), out, np.nan))

    @staticmethod
    def sf(x, dfn, dfd):
        x, dfn, dfd = (np.asarray(a, float) for a in (x, dfn, dfd))
        out = np.where(x <= 0, 1.0, sc.fdtrc(dfn, dfd, np.maximum(x, 0)))
        return _finish(np.where(_positive(dfn, dfd), out, np.nan))

    @staticmethod
    def ppf(q, dfn, dfd):
        q, dfn, dfd = (np.asarray(a, float) for a in (q, dfn, dfd))
        ok = _positive(dfn, dfd) & (q >= 0) & (q <= 1)
        return _finish(np.where(ok, sc.fdtri(dfn, dfd, np.clip(q, 0, 1)), np.nan))

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
