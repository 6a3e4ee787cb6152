"""Simulation above the engine and psychometrics: respondents drawn from a
population model (simulate), Monte Carlo power (power), power of two-level
designs (twolevel_power) and of complex samples (design_power). Work is spread
over processes or a Dask cluster by analysis.execution.
"""
