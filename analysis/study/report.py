"""The report rendered from a results bundle, cached by the bundle's, the template's and the formats' hashes.
A template is Python that runs while rendering: only shipped ones run unasked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from analysis.study.hashing import hash_json
from analysis.study.records import StepFailure
from analysis.study.serialize import dumps
from instruments.atomic import write_bytes
from instruments.ingest import file_sha256


DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "reports" / "community_resilience.py"


def is_shipped_template(template: str | Path) -> bool:
    """A report template shipped with the suite (``reports/``), the only code a study may run unasked."""
    return Path(template).resolve().parent == DEFAULT_TEMPLATE.parent


def untrusted_template_message(template: str | Path) -> str:
    return (f"{template} is not a shipped report template; a template is Python that runs while the report "
            "renders, so it runs only when you trust it: pass --trust-template (trust_template=True)")


def render_study_report(results_dir: str | Path, out_dir: str | Path | None = None, *,
                        formats: tuple[str, ...] | None = None, template: str | Path | None = None,
                        engine: str = "auto", force: bool = False, trust_template: bool = False) -> dict[str, Any]:
    """Render the report from a results bundle (``results.json`` + tables + figures).

    Cached: the report is re-rendered only when results.json, the template
    or the formats changed (or ``force``). Returns ``{"engine", "outputs",
    "skipped", "cached"}``. A template is Python that runs while rendering:
    one other than the shipped ones runs only with ``trust_template=True``.
    """
    from analysis.study.render import find_quarto, render_report

    results_dir = Path(results_dir).resolve()
    rj = results_dir / "results.json"
    if not rj.is_file():
        raise StepFailure("MissingResults", f"no results.json in {results_dir}; run `resilience run study.yaml` first")
    results = json.loads(rj.read_text(encoding="utf-8"))
    settings = (results.get("study") or {}).get("settings") or {}
    formats = tuple(formats or settings.get("report", {}).get("formats") or ("html",))
    template = Path(template) if template else DEFAULT_TEMPLATE
    if not trust_template and not is_shipped_template(template):
        raise StepFailure("UntrustedTemplate", untrusted_template_message(template))
    if out_dir is None:
        out_dir = results_dir.parent / (settings.get("output", {}).get("reports") or "reports")
    out_dir = Path(out_dir)
    quarto_yml = template.parent / "_quarto.yml"
    key = hash_json({"results": file_sha256(rj), "template": file_sha256(template),
                     "quarto_yml": file_sha256(quarto_yml) if quarto_yml.is_file() else None,
                     "figures": sorted((p.name, file_sha256(p)) for p in (results_dir / "figures").glob("*")
                                       if p.is_file()),
                     "formats": formats, "engine": engine, "quarto": bool(find_quarto()),
                     "render": file_sha256(Path(__file__).with_name("render.py"))})
    stamp = results_dir / ".cache" / "report.json"
    if not force and stamp.is_file():
        prev = json.loads(stamp.read_text(encoding="utf-8"))
        if prev.get("key") == key and all(Path(p).is_file() for p in prev.get("outputs", {}).values()):
            return {**prev, "cached": True}
    title = (settings.get("report") or {}).get("title") or (results.get("study") or {}).get("title")
    res = render_report(template, out_dir, parameters={"results_dir": str(results_dir)}, formats=formats,
                        engine=engine, output_name=template.stem, title=title)
    info = {"key": key, **res.to_dict()}
    write_bytes(stamp, dumps(info).encode())
    return {**info, "cached": False}
