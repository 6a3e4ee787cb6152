"""`resilience reliability | invariance | efa`: psychometrics from the command line.

A thin layer over :mod:`analysis.psychometrics.reliability`, :mod:`analysis.psychometrics.invariance` and
:mod:`analysis.psychometrics.efa`: parse options, call the library, print. With ``--json``
exactly one JSON document goes to stdout. Mistakes raise; how the command then
ends (exit 1 the input is wrong, 2 a wrong option; one JSON error shape) is
instruments/cli/errors.py's.
"""

from __future__ import annotations

import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

from analysis.cli.common import UsageError, one_data_source
from analysis.cli.design import ClusterOpt, StrataOpt, WeightsOpt, design_options
from analysis.format import jsonable

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def _read_data(path: str | None, inst=None, study: Path | None = None):
    """The same reader as every command (analysis.sem.data.read_survey): with the instrument, the
    platform exports `resilience import` reads; with --study, the study store's answers."""
    one_data_source(path, study)
    from analysis.sem.data import read_survey

    return read_survey(path, inst, study=study)


DataArg = typer.Argument(None, help="Survey data: CSV, XLSX, SAV, DTA, Parquet or (with --instrument) a "
                                    "Kobo/ODK/REDCap/LimeSurvey export; or --study.", show_default=False)
StudyOpt = typer.Option(None, "--study", help="Analyse the answers of a study store (resilience import --study DIR).")


def _load_instrument(path: str):
    from instruments import load_instrument

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_instrument(path)


def _read_model(spec: str, inst=None) -> str:
    """The same model resolver as fit and compare: `measurement` is the instrument's own CFA."""
    from analysis.cli.common import check_model_syntax, resolve_model

    syntax = resolve_model(spec, inst)[1]
    check_model_syntax(spec, syntax)
    return syntax


@contextmanager
def _data_named(source) -> Iterator[None]:
    """A grouping column absent from the data names the data file (or study store)."""
    from analysis.errors import DataError

    try:
        yield
    except DataError as exc:
        if not str(exc).startswith("grouping column '") or str(exc).startswith(f"{source}: "):
            raise
        raise type(exc)(f"{source}: {exc}") from None


def _construct_list(inst, spec: str | None) -> list[str] | None:
    """--constructs A,B as a list, each checked against the instrument's latent constructs."""
    if spec is None:
        return None
    wanted = [c.strip() for c in spec.split(",") if c.strip()]
    known = [c.id for c in inst.latent_constructs]
    unknown = [c for c in wanted if c not in known]
    if unknown or not wanted:
        raise UsageError(f"--constructs: unknown construct(s) {', '.join(unknown) or '(none given)'}; "
                         f"{inst.id} has {', '.join(known)}")
    return wanted


def _emit_json(doc: dict) -> None:
    sys.stdout.write(json.dumps(jsonable(doc), allow_nan=False, ensure_ascii=False) + "\n")


def _collect_warnings(caught: list) -> list[str]:
    return [str(w.message) for w in caught]


def _echo_warnings(caught: list) -> None:
    for w in sorted(set(_collect_warnings(caught))):
        typer.echo(f"warning: {w}", err=True)


def reliability(
    data: Optional[str] = DataArg,
    instrument: str = typer.Option(..., "--instrument", "-i", help="Instrument YAML file or shipped name (crs)."),
    ordinal: bool = typer.Option(False, "--ordinal", help="Also ordinal alpha/omega from polychoric correlations."),
    constructs: Optional[str] = typer.Option(None, "--constructs", "-c", help="Comma-separated constructs "
                                             "(default: every latent construct of the instrument)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    study: Optional[Path] = StudyOpt,
    weights: Optional[str] = WeightsOpt,
    cluster: Optional[str] = ClusterOpt,
    strata: Optional[str] = StrataOpt,
) -> None:
    """Reliability per construct (alpha, omega), item analysis, AVE, HTMT.

    With --weights/--cluster/--strata, also weighted alpha and omega per construct with
    standard errors and 95% intervals that respect the sample design.

    Missing codes become missing and reverse-keyed items are recoded from the
    instrument first. Flags list the conventional thresholds crossed (alpha < .70,
    item-total r < .30, AVE < .50, HTMT > .85).

    Examples:

        resilience reliability survey.csv -i crs

        resilience reliability survey.csv -i crs --ordinal --json

        resilience reliability short_form.csv -i crs -c TRUST,CONF,NAVIG
    """
    from analysis.psychometrics.reliability import reliability_report

    inst = _load_instrument(instrument)
    df = _read_data(data, inst, study)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = reliability_report(df, inst, ordinal=ordinal, constructs=_construct_list(inst, constructs))
        df = _with_design_columns(df, data, weights, cluster, strata)
        weighted = _design_reliability(df, inst, _construct_list(inst, constructs), weights, cluster, strata)
    if as_json:
        doc = res.to_dict()
        if weighted is not None:
            doc["design_reliability"] = weighted.to_dict()
        doc["warnings"] = _collect_warnings(caught)
        _emit_json(doc)
    else:
        _echo_warnings(caught)
        typer.echo(res.summary())
        if weighted is not None:
            typer.echo("\n" + weighted.summary())


def _with_design_columns(df, path, *columns):
    """Design columns the instrument does not define (so the import left them out), taken from the
    file row for row when it has them; otherwise the design's own error names the column."""
    wanted = [c for c in columns if c and c not in df.columns]
    if not wanted or path is None:
        return df
    from analysis.sem.data import read_table

    try:
        raw = read_table(path)
    except Exception:  # noqa: BLE001 - a platform export: the design check reports the column
        return df
    if len(raw) == len(df) and all(c in raw.columns for c in wanted):
        df = df.copy()
        for c in wanted:
            df[c] = raw[c].to_numpy()
    return df


def _design_reliability(df, inst, constructs, weights, cluster, strata):
    """Weighted alpha/omega with design-based intervals per latent construct (None without a design)."""
    if not (weights or cluster or strata):
        return None
    import pandas as pd

    from analysis.design import Design
    from analysis.design.psychometrics import DesignReliability, design_reliability
    from analysis.psychometrics.items import is_latent, items_of, recode_items

    design = Design(weights=weights, cluster=cluster, strata=strata)
    names = constructs or [c.id for c in inst.constructs if is_latent(inst, c.id)]
    tables = []
    for c in names:
        items = [i for i in items_of(inst, c) if i in df.columns]
        if len(items) >= 3:
            data = df.copy()
            data[items] = recode_items(df, inst, items)
            tables.append(design_reliability(data, items, design, construct=c).table)
    return DesignReliability(pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(),
                             design.to_dict())


def invariance(
    data: Optional[str] = DataArg,
    model: str = typer.Option(..., "--model", "-m", help="lavaan model file, a shipped model name, inline "
                              "syntax, or measurement (the CFA of --instrument's constructs)."),
    group: str = typer.Option(..., "--group", "-g", help="Column that defines the groups (or a collapsed "
                              "version of an instrument item, e.g. ETHNIC5, with --instrument)."),
    instrument: Optional[str] = typer.Option(
        None, "--instrument", "-i", help="Instrument (YAML or shipped name): its missing codes become missing, "
        "reverse-keyed items are recoded, groups get their labels."),
    estimator: str = typer.Option("ML", "--estimator", "-e", help="ML, MLR, MLM, WLSMV or ULSMV."),
    ordered: Optional[str] = typer.Option(None, "--ordered", help="'all' or comma-separated ordered items."),
    missing: Optional[str] = typer.Option(None, "--missing", help="listwise (default) or fiml (ML/MLR)."),
    steps: Optional[str] = typer.Option(None, "--steps", help="Comma-separated steps (default: the full ladder)."),
    partial: Optional[str] = typer.Option(None, "--partial", help="Search partial invariance at this step (e.g. scalar)."),
    compare: bool = typer.Option(False, "--compare", help="Then compare latent means and structural paths across "
                                 "groups, if scalar (or, with --partial scalar, partial scalar) invariance holds."),
    min_group_size: int = typer.Option(100, "--min-group-size", help="Warn for groups smaller than this."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    study: Optional[Path] = StudyOpt,
    weights: Optional[str] = WeightsOpt,
    cluster: Optional[str] = ClusterOpt,
    strata: Optional[str] = StrataOpt,
    parameterization: Optional[str] = typer.Option(None, "--parameterization", help="Ordered items: delta "
                                                   "(default) or theta, which adds the strict step."),
) -> None:
    """Measurement invariance ladder across groups (configural, metric, scalar, strict).

    Each step is tested against the previous one (chi-square difference, and
    ΔCFI/ΔRMSEA/ΔSRMR against Chen's 2007 cut-offs). With ordered items and
    WLSMV the ladder is configural, thresholds, metric, scalar (Wu & Estabrook 2016).
    A status line on stderr shows which model is being fitted.

    Examples:

        resilience invariance survey.csv -m measurement -g ETHNIC5 -i crs --partial scalar --compare

        resilience invariance survey.csv -m measurement -g LANG -i crs -e WLSMV --ordered all

        resilience invariance survey.csv -m measurement -g LANG -i crs --ordered all --parameterization theta

        resilience invariance hs.csv -m analysis/models/hs.lav -g school --json
    """
    from analysis.errors import OptionError
    from analysis.psychometrics.invariance import (
        SmallGroupError, compare_groups, instrument_group_data, invariance_ladder, partial_invariance_search)

    search = comparison = None
    why_not = ""
    with _status(enabled=True) as status:
        inst = _load_instrument(instrument) if instrument is not None else None
        syntax = _read_model(model, inst)
        df = _read_data(data, inst, study)
        kw = {} if missing is None else {"missing": missing}
        if parameterization is not None:
            kw["parameterization"] = parameterization
        kw.update(design_options(weights, cluster, strata))
        df = _with_design_columns(df, data, weights, cluster, strata)
        if kw.get("sampling_weights") or kw.get("cluster"):
            estimator = "MLR" if estimator.upper() == "ML" else estimator   # as fit_sem (lavaan)
        with warnings.catch_warnings(record=True) as caught, _data_named(study or data):
            warnings.simplefilter("always")
            if instrument is not None:
                df = instrument_group_data(df, inst, syntax, group)
                collapsed = next((it.collapsed.id for it in inst.items if it.id == group and it.collapsed), None)
            else:
                _warn_missing_codes(df, syntax)
            step_list = [s.strip() for s in steps.split(",")] if steps else None
            common = dict(group=group, estimator=estimator, ordered=ordered, min_group_size=min_group_size,
                          progress=status, **kw)
            try:
                res = invariance_ladder(syntax, df, steps=step_list, **common)
            except SmallGroupError as err:
                if instrument is None or not collapsed:
                    raise
                # detailed groups are often too small: the instrument's analysis version is the usual cure
                raise SmallGroupError(f"{err} The instrument collapses '{group}' into '{collapsed}': "
                                      f"try --group {collapsed}.") from None
            if partial:
                try:
                    search = partial_invariance_search(syntax, df, step=partial, **common)
                except OptionError as exc:  # the command's option, not the function's parameter
                    if "The 'step' parameter" not in str(exc):
                        raise
                    raise UsageError(str(exc).replace("The 'step' parameter", "--partial")) from None
            if compare:
                freed: tuple[str, ...] = ()
                if search is not None and search.step == "scalar" and search.holds:
                    freed = search.freed
                elif res.highest not in ("scalar", "strict"):
                    why_not = (f"latent means and paths not compared: scalar invariance does not hold (highest "
                               f"level: {res.highest}); try --partial scalar")
                if not why_not:
                    status("comparing latent means and paths across groups")
                    common.pop("progress")
                    comparison = compare_groups(syntax, df, group_partial=freed, **common)
    found = sorted(set(_collect_warnings(caught)))
    if as_json:
        doc = res.to_dict()
        if search is not None:
            doc["partial"] = search.to_dict()
        if compare:
            doc["group_comparison"] = comparison.to_dict() if comparison is not None else {"skipped": why_not}
        doc["warnings"] = found
        _emit_json(doc)
        return
    _echo_warnings(caught)
    typer.echo(res.summary())
    if search is not None:
        typer.echo("")
        typer.echo(search.summary())
    if compare:
        typer.echo("")
        typer.echo(comparison.summary() if comparison is not None else f"Note: {why_not}.")


@contextmanager
def _status(enabled: bool) -> Iterator:
    """A one-line status on stderr (only on a terminal), updated by the library's progress messages."""
    from rich.console import Console

    console = Console(stderr=True)
    if not (enabled and console.is_terminal):
        yield lambda message: None
        return
    with console.status("starting") as live:
        yield lambda message: live.update(message)


def _warn_missing_codes(df, syntax: str) -> None:
    """Without an instrument, negative answers are most likely missing codes: say so."""
    from analysis.psychometrics.invariance import observed_of

    cols = [v for v in observed_of(syntax) if v in df.columns and df[v].dtype.kind in "fi"]
    neg = sorted({int(v) for c in cols for v in df[c].unique() if v < 0 and float(v).is_integer()})
    if neg:
        warnings.warn(f"the model's items hold negative values ({', '.join(map(str, neg))}); if these are missing "
                      "codes, pass --instrument so they count as missing, not as answers")


def efa(
    data: Optional[str] = DataArg,
    instrument: str = typer.Option(..., "--instrument", "-i", help="Instrument YAML file or shipped name (crs)."),
    n_factors: Optional[int] = typer.Option(None, "--n-factors", "-k", help="Number of factors (default: parallel analysis)."),
    constructs: Optional[str] = typer.Option(None, "--constructs", "-c", help="Comma-separated constructs whose "
                                             "items to factor (default: every latent construct)."),
    rotation: str = typer.Option("oblimin", "--rotation", help="oblimin (default), promax, geomin_obl, quartimin, "
                                 "varimax or none."),
    seed: int = typer.Option(20260101, "--seed", help="Seed of the parallel analysis."),
    missing: str = typer.Option("listwise", "--missing", help="listwise (complete cases) or pairwise (every "
                                "answered pair of items, as psych::fa; keeps respondents who skipped an item)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a scree plot with the parallel-analysis "
                                        "eigenvalues and the loadings as a heat map (.png, .svg or .pdf)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    study: Optional[Path] = StudyOpt,
) -> None:
    """Exploratory factor analysis: KMO, Bartlett, parallel analysis, oblique loadings.

    The items of the instrument's latent constructs, with missing codes and
    reverse keys applied; the loadings table shows each item's intended construct.

    Examples:

        resilience efa survey.csv -i crs

        resilience efa survey.csv -i crs -k 11 --rotation promax --plot scree.png
    """
    from analysis.psychometrics.efa import ROTATIONS, EFAOptionError, efa_report

    if rotation not in ROTATIONS:  # before the data are read and the parallel analysis is run
        raise UsageError(f"--rotation must be one of {', '.join(ROTATIONS)}; got {rotation!r}")
    if n_factors is not None and n_factors < 1:
        raise UsageError(f"--n-factors must be at least 1; got {n_factors}")
    inst = _load_instrument(instrument)
    df = _read_data(data, inst, study)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wanted = _construct_list(inst, constructs)
        items = None if wanted is None else [i.id for c in wanted for i in inst.items_of(c) if i.role == "item"]
        try:
            res = efa_report(df, inst, items=items, n_factors=n_factors, rotation=rotation, seed=seed,
                             missing=missing)
        except EFAOptionError as exc:  # name the command's option, not the function's parameter
            message = str(exc)
            for param, option in (("n_factors", "--n-factors"), ("rotation", "--rotation"), ("missing", "--missing")):
                message = message.replace(f"The '{param}' parameter of efa_report", option)
                message = message.replace(f"The '{param}' parameter of efa", option)
            raise UsageError(message) from None
    if plot is not None:
        from analysis.psychometrics.efa import scree_plot

        scree_plot(res, plot)
    if as_json:
        doc = res.to_dict()
        doc["warnings"] = sorted(set(_collect_warnings(caught)))
        _emit_json(doc)
    else:
        _echo_warnings(caught)
        typer.echo(res.summary())
        if plot is not None:
            typer.echo(f"wrote {plot}", err=True)


def icc_cmd(
    data: Optional[str] = DataArg,
    instrument: str = typer.Option(..., "--instrument", "-i", help="Instrument YAML file or shipped name (crs)."),
    cluster: str = typer.Option(..., "--cluster", help="Column naming each respondent's cluster (community, area)."),
    constructs: Optional[str] = typer.Option(None, "--constructs", "-c", help="Comma-separated constructs "
                                             "(default: every construct of the instrument)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    study: Optional[Path] = StudyOpt,
) -> None:
    """Intraclass correlations (ICC(1)) of items and construct scores by cluster.

    Each ICC is the between-cluster share of the variance from the saturated two-level
    model (lavaan's lavInspect(fit, "icc")), with the design effect 1 + (mean cluster
    size - 1) ICC. Items are recoded from the instrument first.

    Examples:

        resilience icc survey.csv -i crs --cluster community

        resilience icc survey.csv -i crs --cluster area -c TRUST,CONF --json
    """
    from analysis.sem.twolevel import icc_report

    inst = _load_instrument(instrument)
    df = _read_data(data, inst, study)
    if cluster not in df.columns:
        from analysis.errors import DataError

        raise DataError(f"{data or study}: cluster column '{cluster}' not found in the data")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = icc_report(df, inst, cluster=cluster, constructs=_construct_list(inst, constructs)
                           if constructs else None)
    if as_json:
        _emit_json({"cluster": cluster, "icc": table.to_dict(orient="records"),
                    "warnings": _collect_warnings(caught)})
        return
    _echo_warnings(caught)
    typer.echo(f"ICC(1) by '{cluster}' ({int(table['n_clusters'].max())} clusters)\n")
    typer.echo(f"{'':<4}{'variable':<14}{'construct':<12}{'ICC':>8}{'deff':>8}{'n':>7}")
    for row in table.itertuples():
        mark = "*" if row.kind == "construct" else " "
        typer.echo(f"  {mark} {row.variable:<14}{row.construct:<12}{row.icc:8.3f}{row.design_effect:8.2f}{row.n_obs:7d}")
    typer.echo("\n  * construct score (mean of its items)")


def register(app: typer.Typer) -> None:
    app.command("icc")(icc_cmd)
    app.command("reliability")(reliability)
    app.command("invariance")(invariance)
    app.command("efa")(efa)
