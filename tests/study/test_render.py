"""The report renderer's fallback path (no Quarto): jupytext -> papermill -> nbconvert/pandoc."""

from pathlib import Path

import pytest

from analysis.study.render import RenderError, find_quarto, render_report

TEMPLATE = Path(__file__).parents[1] / "fixtures" / "reports" / "tiny_report.py"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return render_report(TEMPLATE, out, parameters={"n": 25}, formats=("html", "docx"), engine="fallback")


def test_fallback_html_is_self_contained_and_parameterised(rendered):
    html = rendered.outputs["html"].read_text(encoding="utf-8")
    assert rendered.engine == "fallback"
    assert "sum of 1..25 is 325" in html  # the parameter reached the kernel
    assert "data:image/png;base64" in html  # figure embedded, no side files
    assert "<title>Tiny report</title>" in html
    assert "#| tags" not in html and "import matplotlib" not in html  # no code, no Quarto options
    assert "format: html" not in html  # YAML header removed


def test_fallback_docx_is_a_word_document(rendered):
    docx = rendered.outputs["docx"]
    assert docx.suffix == ".docx" and docx.read_bytes()[:2] == b"PK"


def test_pdf_without_quarto_chromium_or_weasyprint_is_skipped_with_a_reason(tmp_path, monkeypatch):
    import sys

    import analysis.study.render as render

    monkeypatch.setattr(render, "find_chromium", lambda: None)
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # not installed
    result = render_report(TEMPLATE, tmp_path, parameters={"n": 3}, formats=("html", "pdf"), engine="fallback")
    assert "pdf" in result.skipped and "Quarto (with Typst), Chromium or WeasyPrint" in result.skipped["pdf"]
    assert set(result.outputs) == {"html"}


def test_fallback_html_loads_nothing_from_the_network_and_docx_headings_have_no_pilcrow(rendered):
    import re
    import zipfile

    html = rendered.outputs["html"].read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=[\"']https?:", html)  # no require.js, MathJax, CDN
    assert "¶" not in html
    with zipfile.ZipFile(rendered.outputs["docx"]) as z:
        assert "¶" not in z.read("word/document.xml").decode("utf-8")


def test_failing_template_names_the_cell(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('# %%\n#| tags: [parameters]\nn = 1\n\n# %%\nraise ValueError("boom in template")\n')
    with pytest.raises(RenderError, match="boom in template"):
        render_report(bad, tmp_path / "out", engine="fallback")
    assert not (tmp_path / "out" / "bad.html").exists()  # nothing half-written


def test_template_without_parameters_cell_is_refused(tmp_path):
    bad = tmp_path / "noparams.py"
    bad.write_text("# %%\nx = 1\n")
    with pytest.raises(RenderError, match="parameters"):
        render_report(bad, tmp_path, engine="fallback")


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(RenderError, match="'formats' parameter"):
        render_report(TEMPLATE, tmp_path, formats=("pptx",))


@pytest.mark.skipif(find_quarto() is None, reason="no quarto binary on PATH or QUARTO_PATH: Quarto path not exercised")
def test_quarto_renders_the_same_template(tmp_path):
    result = render_report(TEMPLATE, tmp_path, parameters={"n": 25}, engine="quarto")
    assert result.engine == "quarto"
    assert "sum of 1..25 is 325" in result.outputs["html"].read_text(encoding="utf-8")


def _fake_quarto(tmp_path: Path) -> Path:
    """A stand-in `quarto` that records its command line and environment and writes the output."""
    import stat
    import sys

    script = tmp_path / "quarto"
    script.write_text(f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
if args == ["--version"]:
    print("1.10.0"); sys.exit(0)
out = args[args.index("--output") + 1]
open(out, "w").write(json.dumps({{"args": args, "QUARTO_PYTHON": os.environ.get("QUARTO_PYTHON")}}))
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_quarto_gets_the_suites_python_the_title_and_no_format_links(tmp_path, monkeypatch):
    """Quarto starts its kernel with QUARTO_PYTHON (else the first python3 on PATH, which may lack
    nbformat): the suite's own interpreter, unless the user chose one."""
    import json
    import sys

    monkeypatch.setenv("QUARTO_PATH", str(_fake_quarto(tmp_path)))
    monkeypatch.delenv("QUARTO_PYTHON", raising=False)
    res = render_report(TEMPLATE, tmp_path / "out", parameters={"n": 3}, formats=("html",), title="My study")
    seen = json.loads(res.outputs["html"].read_text())
    assert res.engine == "quarto" and seen["QUARTO_PYTHON"] == sys.executable
    args = " ".join(seen["args"])
    assert "embed-resources:true" in args and "format-links:false" in args and "title:My study" in args
    monkeypatch.setenv("QUARTO_PYTHON", "/opt/my/python")
    res = render_report(TEMPLATE, tmp_path / "out2", parameters={"n": 3}, formats=("html",))
    assert json.loads(res.outputs["html"].read_text())["QUARTO_PYTHON"] == "/opt/my/python"
