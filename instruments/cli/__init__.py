"""Commands that need only the questionnaire layer: ``resilience instrument ...``
(validate, export, codebook, import a form) and fielding (import, validate,
score, quality of answers). The root command in analysis.cli.main mounts them.
"""
