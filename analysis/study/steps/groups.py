"""The group steps: measurement invariance across each grouping variable and the key paths by group."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from analysis.study.records import StepFailure, StepOutput
from analysis.study.runner import Run
from analysis.study.serialize import clean
from analysis.study.steps.common import error_text
from analysis.study.steps.models import complete_cases, fit_options, model_data, syntax_of, with_design


def _multigroup_setup(run: Run, index: int) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any], str | None]:
    """(data with ``__group__``, what was left out, fit options with the design, the note of a step
    without a pooled version) for a multi-group fit across ``groups[index]``."""
    data, info = model_data(run, index)
    opts = fit_options(run.study)
    data, design = with_design(run, data, opts)
    opts.update(design)
    return data, info, opts, complete_cases(opts)


def step_invariance(run: Run, index: int) -> StepOutput:
    from analysis.psychometrics.invariance import invariance_ladder

    _, syntax = syntax_of(run, "measurement")
    data, info, opts, note = _multigroup_setup(run, index)
    try:
        res = invariance_ladder(syntax, data, group="__group__", estimator=opts.pop("estimator"),
                                ordered=opts.pop("ordered", None), min_group_size=run.study.min_group_size, **opts)
    except Exception as exc:
        raise StepFailure(type(exc).__name__, f"invariance across '{run.study.groups[index]}' "
                          f"({run.study.where('groups', index)}): {error_text(exc)}") from None
    d = res.to_dict()
    d["group"] = run.study.groups[index]
    d["fits"] = {name: fit.to_dict() for name, fit in res.fits.items()}  # every fit in the bundle
    d.update(info)
    if note:
        d["note"] = note
    # where metric or scalar invariance fails, free the most offending constraints one at a time
    failing = next((c["to"] for c in d["comparisons"] if not c.get("holds") and c["to"] in ("metric", "scalar")), None)
    if failing is not None:
        from analysis.psychometrics.invariance import partial_invariance_search

        opts = fit_options(run.study)
        opts.update(with_design(run, data, opts)[1])
        complete_cases(opts)
        try:
            part = partial_invariance_search(syntax, data, group="__group__", step=failing,
                                             estimator=opts.pop("estimator"), ordered=opts.pop("ordered", None),
                                             min_group_size=run.study.min_group_size, **opts)
        except Exception as exc:  # the ladder stands; say why the search did not
            d["partial"] = {"step": failing, "error": f"{type(exc).__name__}: {exc}"}
        else:
            d["partial"] = part.to_dict()
    return StepOutput(data=clean(d))


_LABEL = re.compile(r"(?<![\w.])(?!NA\s*\*)[A-Za-z_][A-Za-z0-9_.]*\s*\*")


def _unlabelled(syntax: str) -> str:
    """The model without parameter labels and := effects: in a multi-group model a
    label would hold its path equal across groups (lavaan's rule), hiding the differences."""
    lines = []
    for line in syntax.splitlines():
        line = line.split("#", 1)[0]
        if ":=" in line:
            continue
        lines.append(_LABEL.sub("", line))
    return "\n".join(lines) + "\n"


def freed_constraints(run: Run, group: str) -> list[str]:
    """Constraints a partial scalar-invariance search freed for this grouping variable."""
    name = f"invariance:{group}"
    if not run.ok(name):
        return []
    part = run.out(name).data.get("partial") or {}
    return list(part.get("freed") or []) if part.get("step") == "scalar" and part.get("holds") else []


def _check_group_paths(run: Run, syntax: str, model: str) -> None:
    """Every path of ``group_paths`` is a regression of the model; a wrong one is blamed on its own line."""
    from analysis.errors import ModelSyntaxError
    from analysis.sem.syntax import parse_model

    paths = {(s.lhs, s.rhs) for s in parse_model(syntax) if s.op == "~"}
    for j, written in enumerate(run.study.group_paths):
        try:
            stated = [(s.lhs, s.rhs) for s in parse_model(written) if s.op == "~"]
        except ModelSyntaxError as exc:
            raise StepFailure("UnknownPath", f"{run.study.where('group_paths', j)}: '{written}' is not a "
                              f"path ({exc})") from None
        missing = [f"{lhs} ~ {rhs}" for lhs, rhs in stated if (lhs, rhs) not in paths] if stated else [written]
        if missing:
            known = ", ".join(f"{lhs} ~ {rhs}" for lhs, rhs in sorted(paths)) or "none"
            raise StepFailure("UnknownPath", f"{run.study.where('group_paths', j)}: {', '.join(missing)} is not "
                              f"a path of the model '{model}' (its paths: {known})")


def step_group_paths(run: Run, index: int, model: str) -> StepOutput:
    from analysis.psychometrics.invariance import compare_groups

    _, syntax = syntax_of(run, model)
    syntax = _unlabelled(syntax)
    _check_group_paths(run, syntax, model)
    freed = freed_constraints(run, run.study.groups[index])
    data, info, opts, note = _multigroup_setup(run, index)
    try:
        res = compare_groups(syntax, data, group="__group__", estimator=opts.pop("estimator"),
                             ordered=opts.pop("ordered", None), paths=list(run.study.group_paths) or None, lrt=False,
                             group_partial=freed, min_group_size=run.study.min_group_size, **opts)
    except Exception as exc:
        raise StepFailure(type(exc).__name__, f"group comparison across '{run.study.groups[index]}' "
                          f"({run.study.where('groups', index)}): {error_text(exc)}") from None
    d = res.to_dict()
    d["group"] = run.study.groups[index]
    d["model"] = model
    if res.fit is not None:
        d["fit"] = res.fit.to_dict()
    d.update(info)
    if note:
        d["note"] = note
    return StepOutput(data=clean(d))
