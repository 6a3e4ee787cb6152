"""`resilience impute`: multiple imputation of survey items (a thin layer over analysis.psychometrics.impute).

The m completed datasets go to ``-o DIR`` as CSVs, with the imputation model in
``{stem}_imputation.json``; ``resilience fit DIR/*_imp*.csv --model M --pool`` pools them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

import typer

from analysis.format import jsonable


def impute_cmd(
    data: Path = typer.Argument(..., help="Survey data: CSV, XLSX, SAV, DTA, Parquet or (with --instrument) "
                                          "a Kobo/ODK/REDCap/LimeSurvey export.", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the imputed datasets."),
    instrument: Optional[str] = typer.Option(None, "--instrument", "-i",
                                             help="Instrument (YAML or shipped name): its ordinal and numeric "
                                                  "items are imputed, missing codes first become missing."),
    items: Optional[str] = typer.Option(None, "--items", help="Comma-separated item columns (without "
                                        "--instrument; or a subset of the instrument's items)."),
    ordered: Optional[str] = typer.Option(None, "--ordered", help="Without --instrument: which --items are "
                                          "ordinal ('all' or a list)."),
    group: Optional[str] = typer.Option(None, "--group", "-g", help="Grouping column: kept, items imputed "
                                        "within each group."),
    m: int = typer.Option(20, "--m", help="Number of imputed datasets."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (the same seed gives the same data)."),
    iterations: int = typer.Option(10, "--iterations", help="Cycles of chained equations per dataset."),
    ordinal: str = typer.Option("pmm", "--ordinal", help="Ordinal items: pmm (predictive mean matching) "
                                "or polr (proportional odds)."),
    as_json: bool = typer.Option(False, "--json", help="Print the imputation model as JSON."),
) -> None:
    """Impute missing answers m times by chained equations, for fitting with --pool.

    Examples:

        resilience impute survey.csv --instrument crs --m 20 --seed 1 -o imputed/

        resilience fit imputed/survey_imp*.csv --model measurement --instrument crs --ordered all --pool
    """
    from analysis.psychometrics.impute import impute
    from analysis.sem.data import read_survey

    inst = None
    if instrument is not None:
        from instruments import load_instrument

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inst = load_instrument(instrument)
    frame = read_survey(data, inst)
    item_list = [s.strip() for s in items.split(",") if s.strip()] if items else None
    if ordered is not None and ordered.strip().lower() == "all":
        ordered_list = True
    else:
        ordered_list = [s.strip() for s in ordered.split(",") if s.strip()] if ordered else None
    result = impute(frame, instrument=inst, items=item_list, ordered=ordered_list, group=group, m=m,
                    seed=seed, n_iter=iterations, ordinal=ordinal)
    paths = result.write(out, stem=data.stem)   # a folder that cannot be written: OSError, exit 1
    if as_json:
        typer.echo(json.dumps(jsonable({**result.to_dict(), "files": [str(p) for p in paths]}), allow_nan=False))
        return
    typer.echo(result.summary())
    typer.echo(f"\n{len(paths)} datasets written: {paths[0]} ... {paths[-1]}")
    typer.echo(f"the imputation model: {Path(out) / (data.stem + '_imputation.json')}")


def register(app: typer.Typer) -> None:
    app.command("impute")(impute_cmd)
