"""Render a Quarto percent-format report template, with or without Quarto.

Templates in ``reports/`` are Python scripts in jupytext's percent format with
a YAML header in the first markdown cell and one code cell whose first line is
``#| tags: [parameters]``. Quarto (>= 1.4) renders them directly. Where no
``quarto`` binary exists (PATH or ``QUARTO_PATH``) the same template goes
through jupytext -> papermill -> nbconvert (self-contained HTML) and pandoc
(from pypandoc-binary) for DOCX, so a report renders on a fresh machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from instruments.atomic import place_file

__all__ = ["RenderError", "RenderResult", "find_quarto", "find_chromium", "html_to_pdf", "quarto_version",
           "render_report", "pandoc_version"]

SUPPORTED_FORMATS = ("html", "docx", "pdf")
_PARAMETERS_MARK = re.compile(r"^\s*#\|\s*tags:\s*\[([^\]]*)\]\s*$", re.MULTILINE)
_FRONT_MATTER = re.compile(r"\A\s*---\s*\n(.*?)\n---\s*\n?", re.DOTALL)


class RenderError(RuntimeError):
    """A report could not be rendered; the message says which step failed and why."""


@dataclass(frozen=True)
class RenderResult:
    """Where the rendered files are and which engine made them."""

    outputs: dict[str, Path]
    engine: str  # "quarto" or "fallback"
    skipped: dict[str, str] = field(default_factory=dict)  # format -> reason

    def to_dict(self) -> dict:
        return {
            "engine": self.engine,
            "outputs": {fmt: str(path) for fmt, path in self.outputs.items()},
            "skipped": dict(self.skipped),
        }


def find_quarto() -> str | None:
    """Path of a usable ``quarto`` binary: ``QUARTO_PATH``, ``PATH``, then the suite's own environment."""
    candidate = os.environ.get("QUARTO_PATH")
    if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
        return candidate
    beside = Path(sys.executable).parent / "quarto"  # `pip install '.[quarto]'` puts it next to Python
    return shutil.which("quarto") or (str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None)


def quarto_version(quarto: str | None = None) -> str | None:
    quarto = quarto or find_quarto()
    if quarto is None:
        return None
    try:
        out = subprocess.run([quarto, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def pandoc_version() -> str | None:
    try:
        import pypandoc

        return pypandoc.get_pandoc_version()
    except Exception:  # pandoc missing or broken: the report says "unavailable"
        return None


def render_report(
    template: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    parameters: dict | None = None,
    formats: tuple[str, ...] = ("html",),
    output_name: str | None = None,
    engine: str = "auto",
    timeout: int = 900,
    title: str | None = None,
) -> RenderResult:
    """Render ``template`` with ``parameters`` into ``out_dir``.

    ``engine`` is "auto" (Quarto when available, else the fallback),
    "quarto" or "fallback". Outputs are written atomically: a failed render
    never leaves a half-written report in ``out_dir``. ``title`` replaces the
    template's own (a study's report carries the study's title).
    """
    template = Path(template)
    if not template.is_file():
        raise RenderError(f"report template not found: {template}")
    unknown = [f for f in formats if f not in SUPPORTED_FORMATS]
    if unknown:
        raise RenderError(
            f"The 'formats' parameter of render_report must be a subset of {', '.join(SUPPORTED_FORMATS)}. "
            f"Got {', '.join(unknown)} instead."
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output_name = output_name or template.stem
    parameters = dict(parameters or {})

    quarto = find_quarto() if engine in ("auto", "quarto") else None
    if engine == "quarto" and quarto is None:
        raise RenderError("engine='quarto' was asked for but no quarto binary is on PATH or QUARTO_PATH")
    if quarto is not None:
        return _render_with_quarto(quarto, template, out_dir, parameters, formats, output_name, timeout, title)
    return _render_fallback(template, out_dir, parameters, formats, output_name, timeout, title)


# -- Quarto ------------------------------------------------------------------------------------


def _quarto_env() -> dict[str, str]:
    """Quarto starts its Jupyter kernel with QUARTO_PYTHON, else the first python3 on PATH, which
    may lack nbformat and the suite; unless the user chose one, it is this interpreter."""
    env = dict(os.environ)
    env.setdefault("QUARTO_PYTHON", sys.executable)
    return env


def _render_with_quarto(quarto, template, out_dir, parameters, formats, output_name, timeout,
                        title=None) -> RenderResult:
    outputs: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="resilience-quarto-") as tmp:
        work = Path(tmp)
        # Quarto renders next to the source; work on a copy so reports/ stays clean.
        source = work / template.name
        shutil.copy2(template, source)
        quarto_yml = template.parent / "_quarto.yml"
        if quarto_yml.is_file():
            shutil.copy2(quarto_yml, work / "_quarto.yml")
        params_file = work / "params.json"
        params_file.write_text(json.dumps(parameters))
        for fmt in formats:
            target_format = "typst" if fmt == "pdf" else fmt
            cmd = [
                quarto, "render", source.name, "--to", target_format,
                "--execute-params", params_file.name, "--output", f"{output_name}.{fmt}",
            ]
            if fmt == "html":  # one self-contained file, without "Other formats" links back to itself
                cmd += ["-M", "embed-resources:true", "-M", "format-links:false"]
            if title:
                cmd += ["-M", f"title:{title}"]
            try:
                proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout,
                                      env=_quarto_env())
            except subprocess.TimeoutExpired:
                raise RenderError(f"quarto render timed out after {timeout} s ({template})") from None
            produced = work / f"{output_name}.{fmt}"
            if proc.returncode != 0 or not produced.is_file():
                if fmt == "pdf":  # Typst may be missing from a Quarto install: say so, keep the rest
                    skipped[fmt] = _last_lines(proc.stderr) or "quarto could not produce a PDF"
                    continue
                raise RenderError(f"quarto render of {template} to {fmt} failed:\n{_last_lines(proc.stderr)}")
            outputs[fmt] = place_file(produced, out_dir / produced.name)
    return RenderResult(outputs=outputs, engine="quarto", skipped=skipped)


# -- Fallback: jupytext -> papermill -> nbconvert / pandoc ---------------------------------------


def _render_fallback(template, out_dir, parameters, formats, output_name, timeout, title=None) -> RenderResult:
    import jupytext
    import nbformat
    import papermill

    notebook = jupytext.read(template)
    title, front_matter = _take_front_matter(notebook, title)
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    notebook.metadata["language_info"] = {"name": "python"}
    _tag_parameters_cell(notebook, template)

    outputs: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="resilience-render-") as tmp:
        work = Path(tmp)
        source, executed = work / "report.ipynb", work / "executed.ipynb"
        nbformat.write(notebook, source)
        try:
            papermill.execute_notebook(
                str(source), str(executed), parameters=parameters, kernel_name="python3",
                progress_bar=False, cwd=str(template.parent.resolve()), execution_timeout=timeout,
                log_output=False, **_kernel_manager(),
            )
        except papermill.PapermillExecutionError as exc:
            raise RenderError(
                f"report template {template} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
            ) from None
        executed_nb = nbformat.read(executed, as_version=4)
        _strip_quarto_options(executed_nb)

        html_path = work / f"{output_name}.html"
        html_path.write_text(_to_html(executed_nb, title), encoding="utf-8")
        if "html" in formats:
            outputs["html"] = place_file(html_path, out_dir / html_path.name, copy=True)
        if "docx" in formats:
            docx = work / f"{output_name}.docx"
            try:
                _html_to_docx(html_path, docx, title)
                outputs["docx"] = place_file(docx, out_dir / docx.name)
            except Exception as exc:  # pandoc missing: report it, keep the HTML
                skipped["docx"] = f"pandoc could not write DOCX: {exc}"
        if "pdf" in formats:
            pdf = work / f"{output_name}.pdf"
            why = html_to_pdf(html_path, pdf, timeout=timeout)
            if why:
                skipped["pdf"] = why
            else:
                outputs["pdf"] = place_file(pdf, out_dir / pdf.name)
    return RenderResult(outputs=outputs, engine="fallback", skipped=skipped)


def _kernel_manager() -> dict:
    """On POSIX, talk to the kernel over IPC sockets: a local render needs no TCP ports
    (and the kernel then does not warn about unencrypted TCP on every report)."""
    if os.name != "posix":
        return {}
    from jupyter_client.manager import AsyncKernelManager

    class _IPCKernelManager(AsyncKernelManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.transport = "ipc"

    return {"kernel_manager_class": _IPCKernelManager}


def _take_front_matter(notebook, title: str | None = None) -> tuple[str, dict]:
    """Remove the Quarto YAML header (first markdown cell) and return its title (or ``title``)."""
    from ruamel.yaml import YAML

    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "markdown":
            continue
        match = _FRONT_MATTER.match(cell.source)
        if not match:
            break
        meta = YAML(typ="safe").load(match.group(1)) or {}
        rest = cell.source[match.end():].strip()
        if rest:
            cell.source = rest
        else:
            del notebook.cells[index]
        title = title or str(meta.get("title", ""))
        if title:
            notebook.cells.insert(0, _markdown_cell(f"# {title}"))
        return title, meta
    return "", {}


def _markdown_cell(text: str):
    import nbformat

    return nbformat.v4.new_markdown_cell(text)


def _tag_parameters_cell(notebook, template: Path) -> None:
    # jupytext keeps Quarto's `#| tags: [parameters]` in the source; papermill reads metadata.
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        match = _PARAMETERS_MARK.search(cell.source)
        if match and "parameters" in [t.strip().strip("'\"") for t in match.group(1).split(",")]:
            tags = cell.metadata.setdefault("tags", [])
            if "parameters" not in tags:
                tags.append("parameters")
            return
    raise RenderError(f"{template}: no cell marked '#| tags: [parameters]'")


def _strip_quarto_options(notebook) -> None:
    """Drop `#|` option lines from code cells (they are Quarto's, not the reader's)."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.source = "\n".join(l for l in cell.source.splitlines() if not l.lstrip().startswith("#|"))


# nbconvert's lab template loads require.js, MathJax and mermaid from a CDN: a report opened
# offline (or archived) would try the network. The report needs none of them.
_SELF_CONTAINED = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def _to_html(notebook, title: str) -> str:
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(extra_loaders=[DictLoader({"self_contained.html.j2": _SELF_CONTAINED})],
                            template_file="self_contained.html.j2")
    exporter.anchor_link_text = ""  # no "¶" after headings (it reached DOCX headings through pandoc)
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    exporter.embed_images = True
    if title:
        notebook.metadata["title"] = title
    body, _ = exporter.from_notebook_node(notebook)
    return body


def find_chromium() -> str | None:
    """A Chromium or Chrome binary for print-to-PDF: ``RESILIENCE_CHROMIUM``, else the usual names on PATH."""
    named = os.environ.get("RESILIENCE_CHROMIUM")
    if named and Path(named).is_file():
        return named
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def html_to_pdf(html: Path, pdf: Path, *, timeout: int = 300) -> str:
    """Print the self-contained HTML report to PDF with the report's print stylesheet.

    Headless Chromium first (what a reader's browser prints), else WeasyPrint;
    returns "" on success, else why no PDF could be made.
    """
    chromium = find_chromium()
    if chromium is not None:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--disable-background-networking", "--no-pdf-header-footer",
               f"--print-to-pdf={pdf}", html.resolve().as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"Chromium ({chromium}) could not print the report: {exc}"
        if pdf.is_file() and pdf.stat().st_size > 0:
            return ""
        return f"Chromium ({chromium}) could not print the report:\n{_last_lines(proc.stderr)}"
    try:
        import weasyprint
    except ImportError:
        return ("PDF needs Quarto (with Typst), Chromium or WeasyPrint, and none was found: install chromium "
                "(or `pip install weasyprint`), or set RESILIENCE_CHROMIUM to a Chrome binary")
    try:
        weasyprint.HTML(filename=str(html)).write_pdf(str(pdf))
    except Exception as exc:  # WeasyPrint's own failure, reported with the format
        return f"WeasyPrint could not print the report: {type(exc).__name__}: {exc}"
    return ""


def _html_to_docx(html: Path, docx: Path, title: str) -> None:
    import pypandoc

    extra = ["--metadata", f"title={title}"] if title else []
    pypandoc.convert_file(str(html), "docx", format="html", outputfile=str(docx), extra_args=extra)


def _last_lines(text: str, n: int = 15) -> str:
    return "\n".join((text or "").strip().splitlines()[-n:])
