"""Survey-design commands and the design flags every analysis command shares.

``--weights COL --cluster COL --strata COL`` (lavaan's ``sampling.weights`` and
``cluster``; strata by Taylor linearisation) are defined once here.
``resilience weights`` makes calibration weights; ``resilience describe``
prints design-based means and proportions (analysis.design).
"""
from __future__ import annotations

from typing import Optional

import typer

from analysis.cli.common import UsageError

WeightsOpt = typer.Option(None, "--weights", help="Column of sampling (or calibration) weights.")
ClusterOpt = typer.Option(None, "--cluster", help="Column of clusters (PSUs: areas, organisations).")
StrataOpt = typer.Option(None, "--strata", help="Column of strata (PSUs are nested within them).")


def design_options(weights: Optional[str], cluster: Optional[str], strata: Optional[str]) -> dict:
    """fit_sem's keyword arguments for the design flags that were given."""
    given = {"sampling_weights": weights, "cluster": cluster, "strata": strata}
    return {k: v for k, v in given.items() if v}


def _split(value: Optional[str]) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def weights_cmd(
    data: str = typer.Argument(..., help="Survey data (CSV, XLSX, .sav, .dta, Parquet)."),
    targets: str = typer.Option(..., "--targets", help="CSV of population margins: variable,category,proportion."),
    method: str = typer.Option("rake", "--method", help="rake, linear or poststratify."),
    base_weight: Optional[str] = typer.Option(None, "--base-weight", help="Column of design (base) weights."),
    trim: Optional[str] = typer.Option(None, "--trim", help="LO,HI: bound the weights at LO and HI times "
                                       "their mean, then rake again (e.g. 0.3,3)."),
    by: Optional[str] = typer.Option(None, "--by", help="Calibrate within each group of this column."),
    output: str = typer.Option(..., "-o", "--output", help="Output CSV: the data plus a 'weight' column."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON document."),
) -> None:
    """Calibration weights to population margins (survey's rake / calibrate / postStratify).

    The weights reproduce the margins; they sum to N (or to the sum of --base-weight).

    Example: resilience weights survey.csv --targets census.csv --method rake --trim 0.3,3 -o weighted.csv
    """
    import json

    def work():
        from analysis.sem.data import read_table
        from analysis.design.calibrate import calibrate, read_targets
        from analysis.errors import DataError

        bounds = None
        if trim:
            parts = _split(trim)
            try:
                bounds = tuple(float(p) for p in parts)
            except ValueError:
                bounds = ()
            if len(bounds) != 2:
                raise UsageError(f"--trim takes LO,HI (multiples of the mean weight), got {trim!r}")
        frame = read_table(data)
        res = calibrate(frame, read_targets(targets), method=method.lower(), base_weight=base_weight,
                        trim=bounds, by=by, source=str(targets))
        if "weight" in frame.columns and base_weight != "weight":
            raise DataError(f"{data} already has a 'weight' column; rename it (or pass it as --base-weight)")
        frame.assign(weight=res.weights).to_csv(output, index=False)
        return res

    res = work()
    if as_json:
        from analysis.format import jsonable
        typer.echo(json.dumps(jsonable({"output": output, **res.to_dict()}), allow_nan=False))
    else:
        typer.echo(res.summary())
        typer.echo(f"wrote {output}")


def describe_cmd(
    data: str = typer.Argument(..., help="Survey data (CSV, XLSX, .sav, .dta, Parquet)."),
    variables: Optional[str] = typer.Option(None, "--vars", help="Numeric columns for means, comma-separated."),
    categorical: Optional[str] = typer.Option(None, "--categorical", help="Columns for proportions."),
    by: Optional[str] = typer.Option(None, "--by", help="Estimate within each group of this column."),
    weights: Optional[str] = WeightsOpt,
    cluster: Optional[str] = ClusterOpt,
    strata: Optional[str] = StrataOpt,
    fpc: Optional[str] = typer.Option(None, "--fpc", help="Column of stratum population sizes (PSUs)."),
    nest: bool = typer.Option(False, "--nest", help="Cluster ids restart within strata."),
    lonely_psu: str = typer.Option("fail", "--lonely-psu", help="A stratum with one PSU: fail, adjust, "
                                   "average, certainty or remove (survey's options)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Design-based means and proportions with Taylor-linearised SEs and design effects.

    Example: resilience describe survey.csv --vars trust,confid --categorical ethnic --by lang --weights w --cluster area --strata region --json
    """
    import json

    def work():
        from analysis.sem.data import read_table
        from analysis.design import Design
        from analysis.design.describe import describe

        if not _split(variables) and not _split(categorical):
            raise UsageError("name at least one column with --vars or --categorical")
        design = Design(weights=weights, cluster=cluster, strata=strata, fpc=fpc, nest=nest,
                        lonely_psu=lonely_psu)
        return describe(read_table(data), design, variables=_split(variables),
                        categorical=_split(categorical), by=by, source=str(data))

    res = work()
    if as_json:
        typer.echo(json.dumps(res.to_dict(), allow_nan=False))
    else:
        typer.echo(res.summary())


def replicate_cmd(
    data: str = typer.Argument(..., help="Survey data (CSV, XLSX, .sav, .dta, Parquet)."),
    weights: Optional[str] = WeightsOpt,
    cluster: Optional[str] = ClusterOpt,
    strata: Optional[str] = StrataOpt,
    replicates: int = typer.Option(500, "--replicates", min=2, help="Number of bootstrap replicates."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (the same seed, the same weights)."),
    output: str = typer.Option(..., "-o", "--output", help="Output CSV: the data plus rep1..repR columns."),
) -> None:
    """Rao-Wu rescaled bootstrap replicate weights (survey's "subbootstrap"), for export.

    Variances from them: scale 1/(R-1), replicates centred at their mean (survey's svrepdesign).

    Example: resilience replicate survey.csv --weights w --cluster area --strata region --replicates 500 --seed 1 -o reps.csv
    """
    def work():
        from analysis.sem.data import read_table
        from analysis.design import Design
        from analysis.design.replicate import rao_wu_bootstrap

        frame = read_table(data)
        reps = rao_wu_bootstrap(Design(weights=weights, cluster=cluster, strata=strata), frame,
                                replicates=replicates, seed=seed)
        clash = [c for c in reps.to_frame().columns if c in frame.columns]
        if clash:
            from analysis.errors import DataError
            raise DataError(f"{data} already has column(s) {', '.join(clash[:3])}; rename them first")
        import pandas as pd
        pd.concat([frame.reset_index(drop=True), reps.to_frame()], axis=1).to_csv(output, index=False)
        return reps

    reps = work()
    typer.echo(f"wrote {reps.replicates} replicate weights (Rao-Wu bootstrap, scale 1/{reps.replicates - 1}) "
               f"to {output}")


def _designs(text: str) -> list[tuple[int, int]]:

    out = []
    for part in _split(text):
        try:
            c, m = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise UsageError(f"--designs takes CLUSTERSxSIZE pairs such as 10x20,20x10; got {part!r}") from None
        out.append((c, m))
    if not out:
        raise UsageError("--designs needs at least one CLUSTERSxSIZE pair")
    return out


def design_power_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Population model: a name in analysis/models/population "
                              "(figure1) or a lavaan file with population values."),
    path: str = typer.Option(..., "--path", help="The path to detect, e.g. 'NAVIG ~ NEGOT'."),
    designs: str = typer.Option(..., "--designs", help="PSUs per stratum x PSU size, e.g. 10x20,20x10,40x5."),
    strata: int = typer.Option(4, "--strata", min=1, help="Number of strata."),
    icc: float = typer.Option(0.1, "--icc", min=0.0, max=0.99, help="Intraclass correlation of every construct."),
    reps: int = typer.Option(200, "--reps", min=2, help="Replications per design."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Local processes (default: all cores)."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write the power plot (PNG/SVG) here."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Monte Carlo power under a stratified, clustered, weighted design (clusters x cluster size).

    Example: resilience design-power -m figure1 --path "NAVIG ~ NEGOT" --designs 10x20,20x10,40x5 --icc 0.1 --plot power.png
    """
    import json

    def work():
        from pathlib import Path as _Path

        from analysis.errors import OptionError
        from analysis.simulation.design_power import design_power

        spec = model
        if _Path(model).is_file():
            from analysis.simulation.simulate import PopulationModel
            spec = PopulationModel.from_syntax(_Path(model).read_text(), source=model)
        try:
            res = design_power(spec, path, _designs(designs), reps=reps, strata=strata, icc=icc, seed=seed,
                               workers=workers, progress=not as_json)
        except OptionError as exc:  # the command's option, not the function's parameter
            if not str(exc).startswith("path "):
                raise
            raise UsageError(f"--{exc}") from None
        if plot:
            res.plot(plot)
        return res

    res = work()
    if as_json:
        typer.echo(json.dumps(res.to_dict(), allow_nan=False))
    else:
        typer.echo(res.summary())
        if plot:
            typer.echo(f"wrote {plot}")


def register(app: typer.Typer) -> None:
    app.command("design-power")(design_power_cmd)
    app.command("weights")(weights_cmd)
    app.command("describe")(describe_cmd)
    app.command("replicate")(replicate_cmd)
