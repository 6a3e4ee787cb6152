"""`resilience reliability | invariance | efa`: psychometrics from the command line.

A thin layer over :mod:`analysis.reliability`, :mod:`analysis.invariance` and
:mod:`analysis.efa`: parse options, call the library, print. With ``--json``
exactly one JSON document goes to stdout. A user's mistake (missing file,
unknown column, too small a group) prints one line naming it and exits 2;
nothing ends in a traceback.
"""

from __future__ import annotations

import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

from analysis.format import jsonable

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Errors of the input become one line on stderr, exit 2."""
    from analysis.errors import AnalysisError

    try:
        from instruments import InstrumentError
    except ImportError:  # pragma: no cover
        InstrumentError = ()  # type: ignore[assignment]
    try:
        yield
    except typer.Exit:
        raise
    except InstrumentError as err:  # type: ignore[misc]
        typer.echo(str(err), err=True)
        raise typer.Exit(2)
    except (AnalysisError, FileNotFoundError, KeyError, ValueError) as err:
        _fail(str(err).strip("'\""))
    except Exception as err:  # a bug, not the user's mistake: say so, no traceback
        _fail(f"internal error ({type(err).__name__}: {err}); please report it with the command you ran", code=1)


def _read_data(path: str):
    p = Path(path)
    if not p.exists():
        _fail(f"data file '{path}' not found")
    from analysis.data import read_table

    return read_table(p)


def _load_instrument(path: str):
    from instruments import load_instrument

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_instrument(path)


def _read_model(spec: str) -> str:
    p = Path(spec)
    if p.exists():
        return p.read_text(encoding="utf-8")
    shipped = MODELS_DIR / f"{spec}.lav"
    if shipped.exists():
        return shipped.read_text(encoding="utf-8")
    if "=~" in spec or "~" in spec:
        return spec  # inline syntax
    names = ", ".join(sorted(q.stem for q in MODELS_DIR.glob("*.lav")))
    _fail(f"model '{spec}' is neither a file nor a shipped model ({names})")
    return ""


def _emit_json(doc: dict) -> None:
    sys.stdout.write(json.dumps(jsonable(doc), allow_nan=False, ensure_ascii=False) + "\n")


def _collect_warnings(caught: list) -> list[str]:
    return [str(w.message) for w in caught]


def reliability(
    data: str = typer.Argument(..., help="Survey data (CSV, XLSX, SAV, DTA, Parquet)."),
    instrument: str = typer.Option(..., "--instrument", "-i", help="Instrument YAML file or shipped name (crs)."),
    ordinal: bool = typer.Option(False, "--ordinal", help="Also ordinal alpha/omega from polychoric correlations."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Reliability per construct (alpha, omega), item analysis, AVE, HTMT."""
    from analysis.reliability import reliability_report

    with _user_errors():
        inst = _load_instrument(instrument)
        df = _read_data(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = reliability_report(df, inst, ordinal=ordinal)
    if as_json:
        doc = res.to_dict()
        doc["warnings"] = _collect_warnings(caught)
        _emit_json(doc)
    else:
        typer.echo(res.summary())


def invariance(
    data: str = typer.Argument(..., help="Survey data (CSV, XLSX, SAV, DTA, Parquet)."),
    model: str = typer.Option(..., "--model", "-m", help="lavaan model file, or a shipped model name."),
    group: str = typer.Option(..., "--group", "-g", help="Column that defines the groups."),
    estimator: str = typer.Option("ML", "--estimator", "-e", help="ML, MLR, MLM, WLSMV or ULSMV."),
    ordered: Optional[str] = typer.Option(None, "--ordered", help="'all' or comma-separated ordered items."),
    steps: Optional[str] = typer.Option(None, "--steps", help="Comma-separated steps (default: the full ladder)."),
    partial: Optional[str] = typer.Option(None, "--partial", help="Search partial invariance at this step (e.g. scalar)."),
    min_group_size: int = typer.Option(100, "--min-group-size", help="Warn for groups smaller than this."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Measurement invariance ladder across groups (configural, metric, scalar, strict)."""
    from analysis.invariance import invariance_ladder, partial_invariance_search

    with _user_errors():
        syntax = _read_model(model)
        df = _read_data(data)
        step_list = [s.strip() for s in steps.split(",")] if steps else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = invariance_ladder(
                syntax, df, group=group, estimator=estimator, ordered=ordered, steps=step_list, min_group_size=min_group_size
            )
            search = None
            if partial:
                search = partial_invariance_search(
                    syntax, df, group=group, step=partial, estimator=estimator, ordered=ordered, min_group_size=min_group_size
                )
    if as_json:
        doc = res.to_dict()
        if search is not None:
            doc["partial"] = search.to_dict()
        doc["warnings"] = sorted(set(_collect_warnings(caught)))
        _emit_json(doc)
        return
    for w in sorted(set(_collect_warnings(caught))):
        typer.echo(f"warning: {w}", err=True)
    typer.echo(res.summary())
    if search is not None:
        typer.echo("")
        typer.echo(search.summary())


def efa(
    data: str = typer.Argument(..., help="Survey data (CSV, XLSX, SAV, DTA, Parquet)."),
    instrument: str = typer.Option(..., "--instrument", "-i", help="Instrument YAML file or shipped name (crs)."),
    n_factors: Optional[int] = typer.Option(None, "--n-factors", "-k", help="Number of factors (default: parallel analysis)."),
    rotation: str = typer.Option("oblimin", "--rotation", help="oblimin (default) or promax."),
    seed: int = typer.Option(20260101, "--seed", help="Seed of the parallel analysis."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Exploratory factor analysis: KMO, Bartlett, parallel analysis, oblique loadings."""
    from analysis.efa import efa_report

    with _user_errors():
        inst = _load_instrument(instrument)
        df = _read_data(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = efa_report(df, inst, n_factors=n_factors, rotation=rotation, seed=seed)
    if as_json:
        doc = res.to_dict()
        doc["warnings"] = sorted(set(_collect_warnings(caught)))
        _emit_json(doc)
    else:
        typer.echo(res.summary())


def register(app: typer.Typer) -> None:
    app.command("reliability")(reliability)
    app.command("invariance")(invariance)
    app.command("efa")(efa)
