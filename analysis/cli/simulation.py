"""`resilience simulate` and `resilience power`: thin commands over analysis.simulation.simulate
and analysis.simulation.power (no statistics here). A wrong option value raises UsageError (exit 2);
how a command ends is instruments/cli/errors.py's."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import typer

from analysis.cli.common import UsageError, check_model_syntax, resolve_model, scheduler_option

FORMATS = ("csv", "xlsx", "sav", "parquet", "kobo", "odk", "redcap", "limesurvey")
_EXT = {"csv": ".csv", "xlsx": ".xlsx", "sav": ".sav", "parquet": ".parquet"}


def _instrument(spec: str):
    from instruments import load_instrument

    return load_instrument(spec)


def parse_groups(spec: str | None, instrument) -> list | None:
    """``--groups``: 'default' (the instrument's collapsed ethnic groups, minorities
    with TRUST -0.3), 'none', a JSON list or a .json/.yaml file of groups:
    ``[{"name": "majority", "share": 0.7}, {"name": "minority", "share": 0.3,
    "means": {"TRUST": -0.3}, "intercepts": {"TRUST2": 0.4}, "loadings": {"TRUST3": 0.4},
    "codes": [6, 7, 8]}]``."""
    from analysis.simulation.simulate import GroupSpec

    if spec is None or spec == "default":
        return None
    if spec == "none":
        return []
    path = Path(spec)
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        if not path.exists():
            raise UsageError(f"--groups: no file {spec}")
        text = path.read_text()
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            from ruamel.yaml import YAML

            raw = YAML(typ="safe").load(text)
    else:
        try:
            raw = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--groups must be 'default', 'none', a JSON list or a .json/.yaml file "
                             f"(JSON error at column {exc.colno}: {exc.msg})") from None
    if not isinstance(raw, list) or not all(isinstance(g, dict) for g in raw):
        raise UsageError("--groups must be a list of groups, each {name, share, means, intercepts, loadings, codes}")
    fields = {f.name for f in dataclasses.fields(GroupSpec)}
    out = []
    for k, g in enumerate(raw):
        unknown = set(g) - fields
        if unknown:
            raise UsageError(f"--groups: group {k + 1} has unknown key(s) {', '.join(sorted(unknown))}; "
                             f"use {', '.join(sorted(fields))}")
        if "name" not in g or "share" not in g:
            raise UsageError(f"--groups: group {k + 1} needs a name and a share")
        out.append(GroupSpec(**g))
    return out


def simulate_command(
    instrument: str = typer.Option(..., "--instrument", "-i", help="Instrument YAML (or a shipped name: crs)."),
    model: str = typer.Option("figure1", "--model", "-m",
                              help="Population model: a shipped name (figure1) or a .lav file with values."),
    n: int = typer.Option(..., "--n", min=1, help="Number of respondents."),
    seed: int = typer.Option(..., "--seed", help="Random seed (same seed, same respondents)."),
    missing: float = typer.Option(0.0, "--missing", help="Share of item answers missing completely at random."),
    mar: float = typer.Option(0.0, "--mar", help="Share missing at random (more often for low age bands)."),
    careless: float = typer.Option(0.0, "--careless", help="Share of careless respondents (straight-lining, random)."),
    groups: Optional[str] = typer.Option(None, "--groups",
                                         help="'default', 'none', a JSON list or a .json/.yaml file of groups."),
    missing_as: str = typer.Option("code", "--missing-as", help="code (e.g. -9) or blank."),
    fmt: Optional[str] = typer.Option(None, "--format",
                                      help="csv | xlsx | sav | parquet | kobo | odk | redcap | limesurvey "
                                           "(default: from the file extension)."),
    output: Path = typer.Option(..., "-o", "--output", help="File to write."),
) -> None:
    """Simulate respondents of an instrument from a population model, in any import format."""
    from analysis.simulation.simulate import simulate_responses

    if fmt is None:
        fmt = next((k for k, ext in _EXT.items() if output.suffix.lower() == ext), None)
        if fmt is None:
            raise UsageError(f"cannot tell the format of {output.name}: give --format ({' | '.join(FORMATS)})")
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    check_model_syntax(model)
    inst = _instrument(instrument)
    grp = parse_groups(groups, inst)
    data = simulate_responses(model, n, seed=seed, instrument=inst, groups=grp, missing=missing,
                              mar=mar, careless=careless, missing_as=missing_as)
    _write(data, inst, output, fmt)
    typer.echo(f"Wrote {len(data)} simulated respondents of {inst.id} ({model}, seed {seed}) to {output} [{fmt}]")


def _write(data, inst, output: Path, fmt: str) -> None:
    from instruments.export_data import DATA_WRITERS, write_table

    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt in DATA_WRITERS:
        DATA_WRITERS[fmt](data, inst, output)
    elif fmt == "sav":
        from instruments.export_sav import export_sav

        export_sav(inst, output, data=data)
    else:
        if output.suffix.lower() != _EXT[fmt]:
            raise UsageError(f"--format {fmt} needs a {_EXT[fmt]} file; got {output.name}")
        write_table(data, output)


def _sizes(text: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UsageError(f"--n must be comma-separated whole numbers, e.g. 300,500,1000; got {text!r}") from None


def power_command(
    instrument: Optional[str] = typer.Option(None, "--instrument", "-i",
                                             help="Instrument YAML (or crs); respondents in its shape."),
    model: str = typer.Option("figure1", "--model", "-m", help="Population model (name or .lav with values)."),
    n: str = typer.Option("300,500,1000", "--n", help="Sample sizes, comma-separated."),
    reps: int = typer.Option(500, "--reps", min=1, help="Replications per sample size."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
    target: float = typer.Option(0.8, "--target", help="Power to reach."),
    effects: Optional[str] = typer.Option(None, "--effects",
                                          help="Effects for the minimum N (labels or := names, comma-separated)."),
    analysis: Optional[str] = typer.Option(None, "--analysis", help="Analysis model: a shipped name, a file or "
                                           "inline syntax, as fit's --model (default: the population's)."),
    estimator: str = typer.Option("ML", "--estimator", "-e", help="ML or MLR."),
    missing_method: str = typer.Option("listwise", "--missing-method", help="listwise or fiml."),
    missing: float = typer.Option(0.0, "--missing", help="MCAR share of answers in the simulated data."),
    careless: float = typer.Option(0.0, "--careless", help="Share of careless respondents."),
    continuous: bool = typer.Option(False, "--continuous", help="Continuous responses instead of Likert codes."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Local processes (default: all cores)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", callback=scheduler_option, help="Dask scheduler, e.g. tcp://10.0.0.5:8786."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the power curves (.png/.svg/.pdf)."),
    clusters: Optional[str] = typer.Option(None, "--clusters",
                                           help="Two-level model (level: blocks): numbers of clusters, "
                                                "e.g. 30,60,100."),
    cluster_sizes: str = typer.Option("10", "--cluster-sizes",
                                      help="Two-level: respondents per cluster, comma-separated; MIN-MAX draws "
                                           "each cluster's size uniformly (e.g. 5,10,5-15)."),
    icc: float = typer.Option(0.1, "--icc", help="Two-level: ICC of variables whose level-2 variance is not set."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document and nothing else."),
) -> None:
    """Monte Carlo power, bias and coverage by sample size; smallest N for a target power.

    A two-level population model (a .lav file with level: blocks) gives power by number of
    clusters and cluster size instead: resilience power -m pop.lav --clusters 30,60,100 --cluster-sizes 5,10
    """
    from analysis.simulation.power import power_analysis

    check_model_syntax(model)
    if clusters is not None or _is_twolevel(model):
        given = [flag for flag, on in (("--instrument", instrument is not None), ("--missing", missing > 0),
                                       ("--careless", careless > 0), ("--continuous", continuous),
                                       ("--missing-method", missing_method != "listwise")) if on]
        if given:
            raise UsageError(f"{', '.join(given)}: not used with a two-level population model (its data are "
                             "simulated from the model's own variables, complete)")
        if clusters is None:
            raise UsageError("a two-level population model needs --clusters (numbers of clusters, e.g. 30,60,100)")
        _twolevel_power(model, clusters, cluster_sizes, icc, reps, seed, target, effects, analysis, estimator,
                        workers, scheduler, plot, as_json)
        return
    sizes = _sizes(n)
    inst = _instrument(instrument) if instrument else None
    syntax = resolve_model(analysis)[1] if analysis is not None else None   # the same --model forms as fit
    if syntax is not None:
        check_model_syntax(analysis, syntax, "--analysis")
    res = power_analysis(model, sizes, reps, instrument=inst, analysis=syntax,
                         estimator=estimator.upper(), missing=missing_method, missing_rate=missing,
                         careless=careless, likert=not continuous, target=target, seed=seed, workers=workers,
                         scheduler=scheduler, progress=False if as_json else None)
    names = [e for e in (effects or "").split(",") if e] or None
    mn = res.min_n(names)
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        ax = res.plot(names)
        ax.figure.savefig(plot, bbox_inches="tight", dpi=150)
    if as_json:
        doc = res.to_dict()
        doc["min_n"] = json.loads(mn.to_json(orient="records"))
        typer.echo(json.dumps(doc, allow_nan=False, default=float))
        return
    typer.echo(res.summary())
    if names:
        typer.echo("\nRequested effects:")
        typer.echo(mn.to_string(index=False))
    if plot is not None:
        typer.echo(f"\nPower curves written to {plot}")


def _is_twolevel(model: str) -> bool:
    from analysis.sem.syntax import has_levels

    path = Path(model)
    return path.is_file() and has_levels(path.read_text())


def _counts(text: str, option: str) -> list:
    """``--clusters`` (whole numbers, 2 or more) or ``--cluster-sizes`` (whole numbers or MIN-MAX)."""
    sizes = option == "--cluster-sizes"
    form = "comma-separated whole numbers or MIN-MAX ranges, e.g. 5,10,5-15" if sizes else \
        "comma-separated whole numbers of 2 or more, e.g. 30,60,100"
    out = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            value = (int(lo), int(hi)) if sep and sizes else int(part)
        except ValueError:
            raise UsageError(f"{option} must be {form}; got {part!r}") from None
        low = min(value) if isinstance(value, tuple) else value
        if low < (1 if sizes else 2) or (isinstance(value, tuple) and value[0] > value[1]):
            raise UsageError(f"{option}: {part!r} is not valid; use {form}")
        out.append(value)
    if not out:
        raise UsageError(f"{option} is empty; use {form}")
    return out


def _twolevel_power(model, clusters, cluster_sizes, icc, reps, seed, target, effects, analysis, estimator,
                    workers, scheduler, plot, as_json) -> None:
    """`resilience power` for a two-level population model: power by clusters x cluster size."""
    import numpy as np

    from analysis.simulation.twolevel_power import TwoLevelPower, twolevel_power

    path = Path(model)
    if not path.is_file():
        raise UsageError(f"--clusters needs a two-level population model file (.lav with level: blocks); "
                         f"no file {model}")
    population = path.read_text()
    if not _is_twolevel(model):
        raise UsageError(f"{model} has no level: blocks; --clusters is for two-level population models")
    n_clusters = _counts(clusters, "--clusters")
    sizes = _counts(cluster_sizes, "--cluster-sizes")
    if not 0 <= icc < 1:
        raise UsageError(f"--icc must be in [0, 1); got {icc}")
    if reps < 1:
        raise UsageError(f"--reps must be at least 1; got {reps}")
    syntax = resolve_model(analysis)[1] if analysis is not None else None
    seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else seed   # reported: reproducible
    params = [e.replace(" ", "") for e in (effects or "").split(",") if e.strip()] or None
    table = twolevel_power(population, syntax, n_clusters=n_clusters, cluster_size=sizes,
                           reps=reps, seed=seed, icc=icc, estimator=estimator.upper(), params=params,
                           backend="auto", workers=workers, scheduler=scheduler,
                           progress=False if as_json else None)
    res = TwoLevelPower(table, population, target=target, reps=reps, seed=seed, icc=icc,
                        estimator=estimator.upper(), settings={"model": model})
    if plot is not None:
        res.plot(plot)
    if as_json:
        typer.echo(json.dumps(res.to_dict(), allow_nan=False, default=float))
        return
    typer.echo(res.summary())
    if plot is not None:
        typer.echo(f"\nPower curves written to {plot}")


def register(app: typer.Typer) -> None:
    """Attach `simulate` and `power` to the root `resilience` app."""
    app.command("simulate")(simulate_command)
    app.command("power")(power_command)
