"""A small, fast study for the pipeline and report tests.

Simulated crs answers (three ethnic groups, two languages, missing codes,
careless responders), written as a Kobo export, and small versions of the
shipped models (four constructs, three items each) so that every step runs in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

MEASUREMENT = """\
CULT  =~ CULT1 + CULT2 + CULT3
TRUST =~ TRUST1 + TRUST2 + TRUST3
NEGOT =~ NEGOT1 + NEGOT2 + NEGOT3
NAVIG =~ NAVIG1 + NAVIG2 + NAVIG3
"""

FIGURE1 = MEASUREMENT + """\
TRUST ~ tc*CULT
NEGOT ~ nt*TRUST
NAVIG ~ vn*NEGOT + vt*TRUST
cult_trust_negot_navig := tc*nt*vn
total_cult_navig := tc*nt*vn + tc*vt
"""

TOP_DOWN = MEASUREMENT + """\
TRUST ~ tc*CULT
NAVIG ~ vc*CULT + vt*TRUST
total_cult_navig := vc + tc*vt
"""


def _block(text: str, indent: int = 6) -> str:
    return "|\n" + "".join(" " * indent + line + "\n" for line in text.strip().splitlines())


def make_study(root: Path, *, n: int = 400, seed: int = 11, replications: int = 20, groups=("LANG",),
               data_file: str | None = None, models: list | None = None, estimator: str = "ML",
               missing: str = "listwise", min_group_size: int = 50, threshold: int = 10,
               template: str | None = None, data=None,
               comparisons: tuple = (("figure1", "top_down"),)) -> Path:
    """Write the data (unless ``data_file`` points elsewhere) and a study.yaml; return its path."""
    from instruments import load_instrument
    from instruments.export_data import write_kobo

    from analysis.study.demo import simulate_community_survey

    root.mkdir(parents=True, exist_ok=True)
    if data_file is None:
        inst = load_instrument("crs")
        frame = data if data is not None else simulate_community_survey(n, seed=seed, instrument=inst)
        (root / "data" / "raw").mkdir(parents=True, exist_ok=True)
        write_kobo(frame, inst, root / "data" / "raw" / "survey_kobo.csv")
        data_file = "data/raw/survey_kobo.csv"
    if models is None:
        models = [("measurement", MEASUREMENT), ("figure1", FIGURE1), ("top_down", TOP_DOWN)]
    lines = [
        'title: "Pipeline test study"',
        "instrument: crs",
        "data:",
        f"  - file: {data_file}",
        "    format: kobo",
        f"groups: {json.dumps(list(groups))}",
        f"estimator: {estimator}",
        f"missing: {missing}",
        "models:",
    ]
    for m in models:
        if isinstance(m, str):
            lines.append(f"  - {m}")
        else:
            lines += [f"  - name: {m[0]}", f"    syntax: {_block(m[1])}".rstrip("\n")]
    lines += ["comparisons:" + ("" if comparisons else " []")] + [f"  - [{a}, {b}]" for a, b in comparisons]
    if ("figure1", "top_down") in comparisons:  # crs's claim, stated in study.yaml as a crs study does
        lines += ["hypotheses:", '  - {id: H1, claim: "Negotiation matters: provision reaches navigation through '
                  'negotiation", model: figure1, against: top_down, path: "NAVIG ~ NEGOT"}']
    lines += [
        f"min_group_size: {min_group_size}",
        "bootstrap:",
        f"  replications: {replications}",
        "  ci: perc",
        "  model: figure1",
        f"seed: {seed}",
        "disclosure:",
        f"  threshold: {threshold}",
        "report:",
        "  formats: [html]",
    ]
    if template:
        lines.append(f"  template: {template}")
    path = root / "study.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


_BASE: dict = {}


def base_run():
    """The small study, run once per test session (no report); later tests copy it, cache included."""
    if "run" not in _BASE:
        import tempfile

        from analysis.study.pipeline import run_study

        root = Path(tempfile.mkdtemp(prefix="resilience-base-")) / "s"
        path = make_study(root)
        _BASE["run"] = run_study(path, progress=False, report=False)
    return _BASE["run"]


def copy_study(dest: Path, *, results: bool = True) -> Path:
    """A copy of the base study folder (with its results cache unless ``results=False``); its study.yaml."""
    import shutil

    src = base_run().study.root
    ignore = shutil.ignore_patterns("reports") if results else shutil.ignore_patterns("results", "reports")
    shutil.copytree(src, dest, ignore=ignore)
    return dest / "study.yaml"
