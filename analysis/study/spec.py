"""A study: one ``study.yaml`` saying which instrument, data, models and report.

The file is read as safe YAML with the line and column of every node kept, and
validated with pydantic; every problem is reported as
``study.yaml:14:5 models[4]: unknown model 'figur1' (did you mean 'figure1'?)``.

Two kinds of problems:

* **structural** (a wrong type, an unknown field, a bad choice): the study
  cannot be run; :func:`load_study` raises :class:`StudyError` listing all of them;
* **references** (a data file that is not there, an unknown model name, a
  comparison naming a model that is not fitted): found by :meth:`Study.check`,
  and turned by the pipeline into failed steps, so that everything else still
  runs and the report says what failed.

>>> study = load_study("my-study/study.yaml")        # doctest: +SKIP
>>> study.where("models", 1)                          # doctest: +SKIP
'study.yaml:17:5 models[1]'
"""

from __future__ import annotations

import difflib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from analysis.errors import AnalysisError

__all__ = [
    "Study",
    "DataSource",
    "ModelSpec",
    "StudyIssue",
    "StudyError",
    "Hypothesis",
    "measurement_model",
    "load_study",
    "parse_study",
    "init_study",
    "shipped_models",
    "STUDY_TEMPLATE",
    "MODELS_DIR",
]

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
DATA_FORMATS = ("csv", "xlsx", "sav", "dta", "parquet", "kobo", "odk", "redcap", "limesurvey")
DEFAULT_MODELS = ["measurement", "figure1", "partial_mediation", "top_down"]


def shipped_models() -> list[str]:
    """Names of the model files shipped in ``analysis/models`` (figure1, top_down, ...)."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.lav"))


# ---------------------------------------------------------------- issues

@dataclass(frozen=True)
class StudyIssue:
    """One problem in a study file, located by line, column and field."""

    type: str
    message: str
    file: str
    line: int | None = None
    col: int | None = None
    field: str = ""
    severity: str = "error"

    @property
    def location(self) -> str:
        where = Path(self.file).name
        if self.line is not None:
            where += f":{self.line}:{self.col}"
        return f"{where} {self.field}".rstrip()

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "file": Path(self.file).name, "line": self.line,
                "col": self.col, "field": self.field, "severity": self.severity, "text": str(self)}


class StudyError(AnalysisError):
    """A study file that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[StudyIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


def _field(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ---------------------------------------------------------------- schema

class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSource(_Part):
    """A data file (any import format of the suite) or the study's DuckDB store."""

    file: str | None = None
    format: Literal["csv", "xlsx", "sav", "dta", "parquet", "kobo", "odk", "redcap", "limesurvey"] | None = None
    mapping: str | None = None
    store: str | None = None

    def model_post_init(self, _ctx: Any) -> None:
        if (self.file is None) == (self.store is None):
            raise ValueError("give either 'file' or 'store'")


class ModelSpec(_Part):
    """A model: a shipped name, or the user's own lavaan syntax (``syntax``) or file (``file``).

    ``description`` is what the report calls the model (shipped models carry
    their own, from the first comment line of their ``.lav`` file).
    """

    name: str
    file: str | None = None
    syntax: str | None = None
    description: str | None = None


class Hypothesis(_Part):
    """A claim the study tests by comparing the model that embodies it with a rival.

    ``path`` (lavaan syntax, ``NAVIG ~ NEGOT``) names the path the claim is about;
    the verdict reports its standardized estimate in ``model``.
    """

    id: str | None = None
    claim: str
    model: str
    against: str
    path: str | None = None


class Bootstrap(_Part):
    replications: int = Field(500, ge=0)
    ci: Literal["perc", "bca", "bca.simple", "norm", "basic"] = "perc"
    model: str | None = None  # None: the first structural model


class Disclosure(_Part):
    """One study-wide rule: nothing published describes fewer than ``k`` respondents.

    ``small_groups``: a category of a grouping or described variable under ``k``
    is merged into ``residual`` (default) or dropped from everything, totals
    included (see :mod:`analysis.study.disclosure`). ``threshold`` is the former name of ``k``.
    """

    k: int = Field(10, ge=1, validation_alias=AliasChoices("k", "threshold"))
    small_groups: Literal["merge", "drop"] = "merge"
    residual: str = Field("Other (merged)", min_length=1)

    @property
    def threshold(self) -> int:
        return self.k


class Report(_Part):
    formats: list[Literal["html", "docx", "pdf"]] = Field(default_factory=lambda: ["html"])
    template: str | None = None
    title: str | None = None  # None: the study's title


class Output(_Part):
    results: str = "results"
    reports: str = "reports"


class SurveyDesign(_Part):
    """The sample design, declared once (``design: {weights: w, cluster: area, strata: region}``):
    every fit, reliability and descriptive step uses it (analysis.design)."""

    weights: str | None = None
    cluster: str | None = None
    strata: str | None = None
    fpc: str | None = None
    nest: bool = False
    lonely_psu: Literal["fail", "adjust", "average", "certainty", "remove"] = "fail"

    def to_design(self):
        from analysis.sem.design import Design

        return Design(**self.model_dump())


class Study(_Part):
    """A validated ``study.yaml``. Paths are relative to the file's folder."""

    title: str = "Community resilience study"
    description: str = ""  # what the study asks, shown first in the report
    instrument: str = "crs"
    data: list[DataSource] = Field(min_length=1)
    groups: list[str] = Field(default_factory=list)
    estimator: Literal["ML", "MLR", "MLM", "WLSMV", "ULSMV"] = "ML"
    missing: Literal["listwise", "fiml", "impute"] = "fiml"
    imputations: int = Field(20, ge=2)   # missing: impute - datasets imputed and pooled
    ordered: bool | list[str] = False
    # left out, these follow the instrument: crs gets its shipped models, any other
    # questionnaire the measurement model built from its own constructs (see _defaults)
    models: list[str | ModelSpec] = Field(default_factory=list)
    comparisons: list[list[str]] = Field(default_factory=list)
    hypotheses: list[Hypothesis] = Field(default_factory=list)
    group_paths: list[str] = Field(default_factory=list)  # empty: every structural path
    min_group_size: int = Field(100, ge=2)
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)
    seed: int = 20260401
    disclosure: Disclosure = Field(default_factory=Disclosure)
    report: Report = Field(default_factory=Report)
    output: Output = Field(default_factory=Output)
    design: SurveyDesign | None = None

    _path: Path = PrivateAttr(default=Path("study.yaml"))
    _positions: dict = PrivateAttr(default_factory=dict)
    _instrument: Any = PrivateAttr(default=None)

    def model_post_init(self, _ctx: Any) -> None:
        # crs's own defaults apply to crs only: another questionnaire has none of its constructs
        if self.instrument == "crs":
            if "models" not in self.model_fields_set:
                self.models = list(DEFAULT_MODELS)
            if "comparisons" not in self.model_fields_set:
                self.comparisons = [["figure1", "top_down"], ["figure1", "partial_mediation"]]
            if "group_paths" not in self.model_fields_set:
                self.group_paths = ["TRUST ~ CULT", "NAVIG ~ TRUST"]
        elif "models" not in self.model_fields_set:
            self.models = ["measurement"]

    @field_validator("estimator", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @field_validator("comparisons")
    @classmethod
    def _pairs(cls, v: list[list[str]]) -> list[list[str]]:
        for pair in v:
            if len(pair) != 2:
                raise ValueError(f"each comparison names two models, got {pair}")
        return v

    # -- locations ----------------------------------------------------------
    @property
    def path(self) -> Path:
        return self._path

    @property
    def root(self) -> Path:
        return self._path.parent

    def resolve(self, relative: str) -> Path:
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.root / p)

    def position(self, *loc: Any) -> tuple[int | None, int | None]:
        loc = tuple(loc)
        while loc:
            if loc in self._positions:
                return self._positions[loc]
            loc = loc[:-1]
        return None, None

    def where(self, *loc: Any) -> str:
        line, col = self.position(*loc)
        text = self._path.name + (f":{line}:{col}" if line is not None else "")
        return f"{text} {_field(loc)}".rstrip()

    def issue(self, type_: str, message: str, *loc: Any, severity: str = "error") -> StudyIssue:
        line, col = self.position(*loc)
        return StudyIssue(type_, message, str(self._path), line, col, _field(loc), severity)

    # -- derived ------------------------------------------------------------
    @property
    def results_dir(self) -> Path:
        return self.resolve(self.output.results)

    @property
    def reports_dir(self) -> Path:
        return self.resolve(self.output.reports)

    def model_specs(self) -> list[tuple[int, ModelSpec]]:
        """(position in ``models``, spec): a bare entry is ``measurement`` (built from the
        instrument), a file of the study (``models/mine.lav``, or ``mine`` found in
        ``models/``), or a shipped model's name."""
        out = []
        for i, m in enumerate(self.models):
            if isinstance(m, ModelSpec):
                out.append((i, m))
            elif m == "measurement":
                out.append((i, ModelSpec(name=m)))
            elif m.endswith(".lav") or self.resolve(m).is_file():
                out.append((i, ModelSpec(name=Path(m).stem, file=m)))
            elif (self.root / "models" / f"{m}.lav").is_file():
                out.append((i, ModelSpec(name=m, file=f"models/{m}.lav")))
            else:
                out.append((i, ModelSpec(name=m, description=_shipped_description(m))))
        return out

    def model_syntax(self, index: int) -> str:
        """The lavaan syntax of ``models[index]``; raises StudyError naming the line."""
        spec = self.model_specs()[index][1]
        if spec.syntax is not None:
            return spec.syntax
        if spec.file is not None:
            path = self.resolve(spec.file)
            if not path.is_file():
                raise StudyError([self.issue("missing-file", f"model file not found: {path}", "models", index, "file")])
            return path.read_text(encoding="utf-8")
        if spec.name == "measurement":
            syntax = measurement_model(self.load_instrument())
            if not syntax.strip():
                raise StudyError([self.issue(
                    "empty-measurement", f"the instrument '{self._instrument.id}' has no latent construct with "
                    "items, so there is no measurement model to build; give constructs (and items their "
                    "`construct`) in the instrument, or a model of your own", "models", index)])
            return syntax
        path = MODELS_DIR / f"{spec.name}.lav"
        if not path.is_file():
            hint = difflib.get_close_matches(spec.name, shipped_models(), n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise StudyError([self.issue(
                "unknown-model", f"unknown model '{spec.name}'{extra}; give 'measurement' (built from the "
                f"instrument), a file of the study (models/NAME.lav), {{name, file}} or {{name, syntax}}, or a "
                f"shipped model ({', '.join(m for m in DEFAULT_MODELS if m != 'measurement')}, for crs)",
                "models", index)])
        return path.read_text(encoding="utf-8")

    def instrument_path(self) -> Path | None:
        """The instrument file: a path relative to the study, else a shipped instrument's name."""
        from instruments import library_path

        p = self.resolve(self.instrument)
        if p.is_file():
            return p
        lib = library_path(self.instrument)
        return lib if lib.is_file() else None

    def load_instrument(self):
        """The study's instrument (loaded once); StudyError naming the ``instrument`` line."""
        if self._instrument is None:
            from instruments import InstrumentError, load_instrument

            path = self.instrument_path()
            if path is None:
                raise StudyError([self.issue("unknown-instrument", f"instrument not found: '{self.instrument}' "
                                             "is neither a file nor a shipped instrument", "instrument")])
            try:
                self._instrument = load_instrument(path)
            except InstrumentError as exc:
                raise StudyError([self.issue("instrument-error", f"the instrument has errors:\n{exc}",
                                             "instrument")]) from None
        return self._instrument

    def model_description(self, name: str) -> str:
        """What the report calls a model: study.yaml's description, a shipped model's own, else its name."""
        for _, spec in self.model_specs():
            if spec.name == name:
                return spec.description or ("measurement model of the instrument's constructs"
                                            if name == "measurement" and spec.syntax is None and spec.file is None
                                            else name)
        return name

    def structural_models(self) -> list[str]:
        return [n for n in self.model_names() if n != "measurement"]

    def bootstrap_model(self) -> str | None:
        """The model whose defined effects are bootstrapped: ``bootstrap.model``, else the first structural one."""
        if self.bootstrap.replications < 2:
            return None
        structural = self.structural_models()
        return self.bootstrap.model or (structural[0] if structural else None)

    def comparison_pairs(self) -> list[tuple[str, str]]:
        """``comparisons`` and the pairs the hypotheses imply, each once."""
        pairs = [tuple(p) for p in self.comparisons] + [(h.model, h.against) for h in self.hypotheses]
        return list(dict.fromkeys(pairs))

    def named_paths(self) -> list[tuple[str, tuple]]:
        """(path as written, location) of every file or folder the study names."""
        named: list[tuple[str, tuple]] = []
        if _looks_like_path(self.instrument) or self.resolve(self.instrument).exists():
            named.append((self.instrument, ("instrument",)))
        for i, src in enumerate(self.data):
            named += [(getattr(src, key), ("data", i, key)) for key in ("file", "mapping", "store")
                      if getattr(src, key) is not None]
        for i, spec in self.model_specs():
            if spec.file is not None:
                named.append((spec.file, ("models", i, "file") if isinstance(self.models[i], ModelSpec) else ("models", i)))
        if self.report.template:
            named.append((self.report.template, ("report", "template")))
        named += [(self.output.results, ("output", "results")), (self.output.reports, ("output", "reports"))]
        return named

    def path_issues(self) -> list[StudyIssue]:
        """Paths that leave the study folder once resolved (``..``, absolute, ``~``, symlinks).

        A study folder is shared; a path out of it would copy a file of the
        reader's machine into the bundle or run code from elsewhere.
        """
        root = self.root.resolve()
        issues = []
        for written, loc in self.named_paths():
            try:
                target = self.resolve(written).resolve()
            except (OSError, RuntimeError):  # a symlink loop
                target = None
            if target is None or not target.is_relative_to(root):
                issues.append(self.issue("outside-study", f"'{written}' is outside the study folder {root}; every "
                                         "path of a study must stay inside its folder (symlinks too)", *loc))
        return issues

    def model_names(self) -> list[str]:
        return [spec.name for _, spec in self.model_specs()]

    def check(self) -> list[StudyIssue]:
        """Problems with what the study refers to (files, models); each one names its line and field."""
        issues: list[StudyIssue] = []
        for i, src in enumerate(self.data):
            if src.file is not None and not self.resolve(src.file).is_file():
                issues.append(self.issue("missing-file", f"data file not found: {self.resolve(src.file)}",
                                         "data", i, "file"))
            if src.mapping is not None and not self.resolve(src.mapping).is_file():
                issues.append(self.issue("missing-file", f"mapping file not found: {self.resolve(src.mapping)}",
                                         "data", i, "mapping"))
        names = self.model_names()
        for i, _ in self.model_specs():
            try:
                self.model_syntax(i)
            except StudyError as err:
                issues += err.issues
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen:
                issues.append(self.issue("duplicate-model", f"model name '{name}' is used twice", "models", i))
            seen.add(name)
        if self.bootstrap.replications >= 2 and self.bootstrap.model is not None and self.bootstrap.model not in names:
            issues.append(self.issue("unknown-model", f"bootstrap.model '{self.bootstrap.model}' is not in 'models' "
                                     f"({', '.join(names)})", "bootstrap", "model"))
        return issues + self.reference_issues()

    def reference_issues(self) -> list[StudyIssue]:
        """Comparisons and hypotheses that name a model ``models`` does not define (a typo would
        otherwise silently drop the comparison the report is about)."""
        names = self.model_names()

        def unknown(name: str) -> str:
            hint = difflib.get_close_matches(name, names, n=1)
            return (f"which is not in 'models' ({', '.join(names)})"
                    + (f"; did you mean '{hint[0]}'?" if hint else ""))

        issues = []
        for i, pair in enumerate(self.comparisons):
            for j, name in enumerate(pair):
                if name not in names:
                    issues.append(self.issue("unknown-model", f"comparison names model '{name}', {unknown(name)}",
                                             "comparisons", i, j))
        for i, h in enumerate(self.hypotheses):
            for key in ("model", "against"):
                name = getattr(h, key)
                if name not in names:
                    issues.append(self.issue("unknown-model", f"hypothesis names model '{name}', {unknown(name)}",
                                             "hypotheses", i, key))
        return issues


def _shipped_description(name: str) -> str | None:
    """A shipped model's description: its first comment line, ``# name: what it is``."""
    path = MODELS_DIR / f"{name}.lav"
    if not path.is_file():
        return None
    first = path.read_text(encoding="utf-8").splitlines()[0] if path.stat().st_size else ""
    head, _, rest = first.lstrip("# ").partition(":")
    return rest.strip() if head.strip() == name and rest.strip() else None


def measurement_model(instrument) -> str:
    """The measurement model of an instrument: each latent construct by its items; observed
    constructs (a count such as crs's REPR) covary freely with every latent one, so that any
    structural model over the same constructs is nested in it."""
    lines = [instrument.measurement_syntax()]
    latent = [line.split("=~")[0].strip() for line in lines[0].splitlines()]
    for c in instrument.constructs:
        if c.kind == "observed" and latent:
            lines.append(f"{c.id} ~~ " + " + ".join(latent))
    return "\n".join(lines) + "\n"


def _looks_like_path(text: str) -> bool:
    """A reference written as a path rather than a shipped name (``crs``)."""
    return any(ch in text for ch in "/\\") or text.startswith(("~", ".")) or text.endswith((".yaml", ".yml", ".lav"))


# ---------------------------------------------------------------- YAML with positions

def _scalar(tag: str, value: str) -> Any:
    kind = tag.rsplit(":", 1)[-1]
    try:
        if kind == "int":
            return int(value.replace("_", ""), 0) if value.lower().startswith(("0x", "0o")) else int(value.replace("_", ""))
        if kind == "float":
            return float(value.replace("_", ""))
    except ValueError:
        return value
    if kind == "bool":
        return value.lower() in ("true", "yes", "on")
    if kind == "null":
        return None
    return value


def _read_yaml(text: str, file: str) -> tuple[Any, dict]:
    """Plain data from safe YAML, with (line, col) of every value by its path."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    positions: dict[tuple, tuple[int, int]] = {}
    try:
        node = YAML(typ="safe").compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise StudyError([StudyIssue("yaml-syntax", f"not valid YAML: {exc.problem or exc}", file, line, col)]) from None
    count = [0]

    def build(n, path):
        count[0] += 1
        if count[0] > 50_000:  # alias bombs
            raise StudyError([StudyIssue("too-large", "the study file expands to too many values", file)])
        positions.setdefault(path, (n.start_mark.line + 1, n.start_mark.column + 1))
        if isinstance(n, ScalarNode):
            return _scalar(str(n.tag), n.value)
        if isinstance(n, SequenceNode):
            return [build(c, path + (i,)) for i, c in enumerate(n.value)]
        if isinstance(n, MappingNode):
            out = {}
            for k, v in n.value:
                key = str(k.value)
                out[key] = build(v, path + (key,))
                if not isinstance(v, ScalarNode):  # a list or mapping is found at its key
                    positions[path + (key,)] = (k.start_mark.line + 1, k.start_mark.column + 1)
            return out
        return None

    return (build(node, ()) if node is not None else None), positions


def parse_study(text: str, *, path: str | Path = "study.yaml") -> Study:
    """Validate study YAML text; raises :class:`StudyError` with every structural problem."""
    file = str(path)
    data, positions = _read_yaml(text, file)
    if not isinstance(data, dict):
        raise StudyError([StudyIssue("not-a-mapping", "a study file must be a mapping of fields "
                                     "(instrument, data, models, ...)", file, 1, 1)])
    try:
        study = Study.model_validate(data)
    except ValidationError as err:
        issues = []
        for e in err.errors(include_url=False):
            loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and (p in ("str", "ModelSpec")
                                                                            or p.startswith("list["))))
            line, col = None, None
            probe = loc
            while probe:
                if probe in positions:
                    line, col = positions[probe]
                    break
                probe = probe[:-1]
            msg = e["msg"]
            if e["type"] == "extra_forbidden":
                name = str(loc[-1])
                known = list(Study.model_fields) + list(DataSource.model_fields) + list(Bootstrap.model_fields)
                hint = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
                msg = f"unknown field '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
            elif e["type"] == "missing":
                msg = f"required field '{loc[-1]}' is missing"
            elif msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            issue = StudyIssue(e["type"], msg, file, line, col, _field(loc))
            if issue not in issues:
                issues.append(issue)
        raise StudyError(issues) from None
    study._path = Path(path)
    study._positions = positions
    outside = study.path_issues()
    if outside:
        raise StudyError(outside)
    return study


def load_study(path: str | Path) -> Study:
    """Read and validate a ``study.yaml`` (or a folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "study.yaml"
    if not p.is_file():
        raise StudyError([StudyIssue("missing-file", f"study file not found: {p}", str(p))])
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise StudyError([StudyIssue("encoding", f"not UTF-8 text ({exc.reason})", str(p))]) from None
    return parse_study(text, path=p.resolve())


# ---------------------------------------------------------------- scaffolding

STUDY_TEMPLATE = """\
# study.yaml: one study, from fielded data to the report.
# Run it with `resilience run study.yaml`; paths are relative to this file.
title: {title}

# The questionnaire: a shipped instrument name (crs = Community Resilience
# Survey) or the path of your own instrument YAML (see docs/instruments.md;
# `resilience instrument import form.xlsx -o my.yaml` brings in an XLSForm).
instrument: {instrument}

# Where the answers are. One entry per file; `format` is detected when left
# out (csv, xlsx, sav, dta, parquet, kobo, odk, redcap, limesurvey).
# Raw files are read, never modified. `mapping` renames items across form versions.
data:
  - file: data/raw/{data_name}
    # format: kobo

{analysis}
# Groups smaller than this are left out of multi-group models.
min_group_size: 100

# Bootstrap of the defined (:=, e.g. indirect and total) effects: replications, and
# percentile (perc), bias-corrected accelerated (bca), bca.simple, norm or basic
# intervals; `model` defaults to the first structural model.
bootstrap:
  replications: 500
  ci: perc

# One seed makes the whole study reproducible.
seed: {seed}

# No published figure (report, results.json, tables, figures) describes fewer
# than k respondents. A group smaller than k (of `groups`, gender, age, language)
# is merged into one residual category before any analysis (merge), or its
# respondents are left out of everything, totals included (drop).
disclosure:
  k: 10
  small_groups: merge

report:
  formats: [html]     # html, docx, pdf
  # title: defaults to the study's title

output:
  results: results    # results.json, Parquet tables, figures, cache
  reports: reports    # rendered reports
"""

# What a crs study asks: the questions of Figure 1 and the shipped models that answer them.
CRS_ANALYSIS = """\
# What the study asks; shown first in the report.
description: >-
  The chapter's Figure 1 (Cole & Habashi) argues that communities navigate
  towards the resources of providers when provision is culturally competent,
  rests on a history of partnership, earns trust and confidence, and is
  negotiated with the community rather than imposed top-down; navigation, with
  the community's own capabilities, makes a community resilient. This report
  tests that model on the study's data, beside rival models, and says in plain
  language whether negotiation matters.

# Grouping variables for measurement invariance and group comparisons:
# columns of the scored data (ETHNIC5 is the census ethnic group collapsed to
# five groups; LANG the interview language).
groups: [ETHNIC5, LANG]

# Estimation: ML, MLR, MLM (continuous) or WLSMV, ULSMV (ordered items);
# missing: fiml (all cases, under MAR), listwise, or impute (ordered items with
# missing answers: `imputations` datasets by chained equations, fits pooled).
estimator: ML
missing: fiml
ordered: false

# Models: `measurement` (every construct of the instrument by its items), the
# shipped figure1, partial_mediation and top_down, files of the study
# (models/mine.lav) and {{name: ..., file: ..., description: ...}} or {{name: ..., syntax: "..."}}.
models:
  - measurement
  - figure1
  - partial_mediation
  - top_down

# The claims the study tests: each names the model that embodies it and its rival;
# the report's verdict is written from them (likelihood-ratio test where nested, AIC, BIC).
hypotheses:
  - id: H1
    claim: "Negotiation matters: provision reaches navigation through negotiation, not top-down"
    model: figure1
    against: top_down
    path: NAVIG ~ NEGOT
# Other model comparisons to report.
comparisons:
  - [figure1, partial_mediation]

# Paths compared across groups (empty: every structural path).
group_paths: ["TRUST ~ CULT", "NAVIG ~ TRUST"]
"""

OWN_ANALYSIS = """\
# What the study asks; shown first in the report.
description: ""

# Grouping variables for measurement invariance and group comparisons
# (columns of the data, e.g. [LANG]).
groups: []

# Estimation: ML, MLR, MLM (continuous) or WLSMV, ULSMV (ordered items);
# missing: fiml (all cases, under MAR), listwise, or impute (ordered items with
# missing answers: `imputations` datasets by chained equations, fits pooled).
estimator: ML
missing: fiml
ordered: false

# Models: `measurement` (every construct of the instrument by its items), files
# of the study (models/mine.lav) and {{name: ..., file: ..., description: ...}}
# or {{name: ..., syntax: "..."}}.
models:
  - measurement
  # - {{name: main, file: models/main.lav, description: "what the model claims"}}

# The claims the study tests, each as the model embodying it against a rival:
# hypotheses:
#   - {{id: H1, claim: "...", model: main, against: rival, path: "Y ~ X"}}
comparisons: []

# Paths compared across groups (empty: every structural path).
group_paths: []
"""


def _own_instrument(instrument: str, target: Path) -> Path | None:
    """The instrument file to copy into a new study, None for a shipped instrument; StudyError
    when ``instrument`` is neither."""
    from instruments import library_instruments

    own = Path(instrument)
    if own.is_file():
        return own
    if instrument in library_instruments():
        return None
    raise StudyError([StudyIssue("unknown-instrument", f"instrument not found: '{instrument}' is neither a file "
                                 f"nor a shipped instrument ({', '.join(library_instruments())})", str(target))])


def init_study(directory: str | Path, *, title: str = "Community resilience study",
               data_name: str = "survey.csv", seed: int = 20260401, overwrite: bool = False,
               instrument: str = "crs") -> Path:
    """Scaffold a study folder: a commented ``study.yaml`` and its folders."""
    root = Path(directory)
    target = root / "study.yaml"
    if target.exists() and not overwrite:
        raise StudyError([StudyIssue("exists", f"{target} already exists; not overwritten", str(target))])
    instrument_file = _own_instrument(instrument, target)
    for sub in ("data/raw", "models", "results", "reports"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    if instrument_file is not None:
        # paths in study.yaml are relative to the study folder: a copy there keeps the study
        # self-contained (and shareable), and `instrument:` resolves wherever `run` is started
        copy = root / instrument_file.name
        if not (copy.exists() and copy.samefile(instrument_file)):
            shutil.copyfile(instrument_file, copy)
        instrument = instrument_file.name
    import json

    analysis = (CRS_ANALYSIS if instrument == "crs" else OWN_ANALYSIS).format()
    text = STUDY_TEMPLATE.format(title=json.dumps(title, ensure_ascii=False), data_name=data_name, seed=seed,
                                 instrument=instrument, analysis=analysis)
    target.write_text(text, encoding="utf-8")
    return target
