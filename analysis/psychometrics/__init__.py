"""Psychometrics on top of the SEM engine: item recoding, reliability, EFA,
measurement invariance and multiple imputation of item answers.

    items        reverse-keying and the model data of an instrument
    reliability  alpha, omega, CR/AVE, HTMT, item statistics
    efa          parallel analysis and exploratory factor analysis
    invariance   the configural -> metric -> scalar -> strict ladder across groups
    impute       chained-equation imputation of Likert answers (pooled by analysis.sem.pool)
"""
