"""The steps of a study run, one module per group: ``data`` (instrument, import, validate, score,
disclosure, quality), ``describe`` (sample description, reliability), ``models`` (CFA and
structural fits, design, ICCs, sensitivity, bootstrap), ``groups`` (invariance, key paths by
group), ``compare`` (model comparisons and verdicts); ``common`` holds what several of them read.

A step is a function of the run (:class:`analysis.study.runner.Run`) returning a
:class:`analysis.study.records.StepOutput`; it raises
:class:`analysis.study.records.StepFailure` with a message naming the file, line or field.
"""
