"""A printable questionnaire for paper fielding: HTML and DOCX, in every language.

Each language gets its own complete copy (starting on a new page): consent,
sections with their intro, numbered questions with tick boxes for every answer
(codes printed small, for data entry), missing codes last, lines to write on
for text and numbers, and routing instructions from the relevance conditions
("Answer only if Q1 is 'Yes'"). Right-to-left languages (Urdu, Arabic ...)
are set right to left.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from instruments import relevance as rel

__all__ = ["RTL_LANGUAGES", "paper_html", "export_paper", "export_paper_html", "export_paper_docx"]

RTL_LANGUAGES = {"ar", "ur", "fa", "ps", "he", "yi", "ku", "sd", "ug"}

_WORDS = {  # the few words the form itself needs, per language (English otherwise)
    "en": {"only_if": "Answer only if", "and": "and", "or": "or", "not": "not", "is": "is",
           "consent": "Consent", "version": "Version", "language": "Language", "tick": "Tick one box."},
    "ur": {"only_if": "صرف اس صورت میں جواب دیں اگر", "and": "اور", "or": "یا", "not": "نہیں", "is": "ہے",
           "consent": "رضامندی", "version": "ورژن", "language": "زبان", "tick": "ایک خانے پر نشان لگائیں۔"},
}


def _w(lang: str, key: str) -> str:
    return _WORDS.get(lang, _WORDS["en"]).get(key, _WORDS["en"][key])


def _numbering(instrument) -> dict[str, int]:
    return {it.id: k for k, it in enumerate(instrument.items, start=1)}


def routing_text(expr, instrument, lang: str) -> str:
    """A relevance condition in words: ``Q1 is 'Yes'``."""
    expr = rel.parse(expr) if isinstance(expr, str) else expr
    number = _numbering(instrument)

    def label(item_id, v):
        try:
            scale = instrument.scale_of(item_id)
            for cat in [*scale.categories, *scale.missing]:
                if cat.code == v:
                    return f"'{cat.label.get(lang, v)}'"
        except KeyError:
            pass
        return str(v)

    def render(e):
        if isinstance(e, rel.Compare):
            q = f"Q{number.get(e.item, e.item)}"
            if e.op == "==":
                return f"{q} {_w(lang, 'is')} {label(e.item, e.value)}"
            if e.op == "!=":
                return f"{q} {_w(lang, 'is')} {_w(lang, 'not')} {label(e.item, e.value)}"
            return f"{q} {e.op} {e.value}"
        if isinstance(e, rel.In):
            opts = f" {_w(lang, 'or')} ".join(label(e.item, v) for v in e.values)
            neg = f" {_w(lang, 'not')}" if e.negate else ""
            return f"Q{number.get(e.item, e.item)} {_w(lang, 'is')}{neg} {opts}"
        if isinstance(e, rel.Not):
            return f"{_w(lang, 'not')} ({render(e.term)})"
        sep = f" {_w(lang, 'and' if isinstance(e, rel.And) else 'or')} "
        return "(" + sep.join(render(t) for t in e.terms) + ")"

    return render(expr)


_CSS = """
body { font-family: "Noto Sans", "Noto Nastaliq Urdu", "Noto Naskh Arabic", "Jameel Noori Nastaleeq", Arial, sans-serif; max-width: 48em; margin: 2em auto; }
section.lang { page-break-after: always; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #999; margin-top: 1.5em; }
.q { margin: 1em 0; page-break-inside: avoid; } .qn { font-weight: bold; }
.route { font-style: italic; color: #555; font-size: 0.9em; } .help { color: #555; font-size: 0.9em; }
ul.opts { list-style: none; padding-left: 1em; } ul.opts li { margin: 0.2em 0; }
.box { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #000; margin-inline-end: 0.5em; }
.code { color: #888; font-size: 0.75em; } .line { border-bottom: 1px solid #000; height: 1.8em; width: 60%; }
.missing { color: #444; }
[dir="rtl"] .route { font-style: normal; } /* Arabic-script text has no italics */
@media print { section.lang { page-break-after: always; } }
"""


def paper_html(instrument, languages: list[str] | None = None) -> str:
    """The questionnaire as one self-contained HTML page (each language a printed section)."""
    languages = languages or list(instrument.languages)
    number = _numbering(instrument)
    parts = [f"<!DOCTYPE html><html lang=\"{escape(languages[0])}\"><head><meta charset=\"utf-8\">"
             f"<title>{escape(instrument.title)}</title><style>{_CSS}</style></head><body>"]
    for lang in languages:
        d = "rtl" if lang in RTL_LANGUAGES else "ltr"
        parts.append(f'<section class="lang" lang="{escape(lang)}" dir="{d}">')
        parts.append(f"<h1>{escape(instrument.title)}</h1>")
        parts.append(f"<p class=\"help\">{escape(_w(lang, 'version'))} {escape(instrument.version)} · "
                     f"{escape(_w(lang, 'language'))}: {escape(lang)}</p>")
        if instrument.consent is not None:
            parts.append(f"<h2>{escape(_w(lang, 'consent'))}</h2><p>{escape(instrument.consent.text.get(lang, ''))}</p>")
        for section in instrument.sections:
            parts.append(f"<h2>{escape(section.title.get(lang, section.id))}</h2>")
            if section.intro:
                parts.append(f"<p>{escape(section.intro.get(lang, ''))}</p>")
            for it in section.items:
                scale = instrument.scales[it.scale]
                parts.append(f'<div class="q" id="{escape(lang)}-{escape(it.id)}">')  # ids unique per page
                if it.relevant:
                    parts.append(f'<p class="route">{escape(_w(lang, "only_if"))}: '
                                 f'{escape(routing_text(it.relevant, instrument, lang))}</p>')
                parts.append(f'<p><span class="qn">Q{number[it.id]}.</span> {escape(it.text.get(lang, ""))} '
                             f'<span class="code">[{escape(it.id)}]</span></p>')
                if it.help:
                    parts.append(f'<p class="help">{escape(it.help.get(lang, ""))}</p>')
                if scale.is_categorical:
                    parts.append('<ul class="opts">')
                    for cat in scale.categories:
                        parts.append(f'<li><span class="box"></span>{escape(cat.label.get(lang, ""))} '
                                     f'<span class="code">{cat.code}</span></li>')
                    for cat in scale.missing:
                        parts.append(f'<li class="missing"><span class="box"></span>{escape(cat.label.get(lang, ""))} '
                                     f'<span class="code">{cat.code}</span></li>')
                    parts.append("</ul>")
                else:
                    parts.append('<div class="line"></div>')
                parts.append("</div>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def export_paper_html(instrument, path: str | Path, *, languages: list[str] | None = None) -> Path:
    from instruments.atomic import atomic_write

    html = paper_html(instrument, languages)
    return atomic_write(Path(path), lambda p: p.write_text(html, encoding="utf-8"))


def export_paper_docx(instrument, path: str | Path, *, languages: list[str] | None = None) -> Path:
    """The questionnaire as a Word document (python-docx), every language from a new page."""
    import docx
    from docx.enum.text import WD_BREAK
    from docx.oxml.ns import qn
    from docx.shared import Pt, RGBColor

    from instruments.atomic import atomic_write

    languages = languages or list(instrument.languages)
    number = _numbering(instrument)
    doc = docx.Document()

    def rtl(paragraph, on: bool):
        if on:  # paragraph direction right to left (w:bidi) and runs marked rtl
            ppr = paragraph._p.get_or_add_pPr()
            bidi = ppr.makeelement(qn("w:bidi"), {})
            ppr.append(bidi)
            for run in paragraph.runs:
                rpr = run._r.get_or_add_rPr()
                rpr.append(rpr.makeelement(qn("w:rtl"), {}))
        return paragraph

    for k, lang in enumerate(languages):
        right = lang in RTL_LANGUAGES
        if k:
            doc.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
        rtl(doc.add_heading(instrument.title, level=1), right)
        rtl(doc.add_paragraph(f"{_w(lang, 'version')} {instrument.version} · {_w(lang, 'language')}: {lang}"), right)
        if instrument.consent is not None:
            rtl(doc.add_heading(_w(lang, "consent"), level=2), right)
            rtl(doc.add_paragraph(instrument.consent.text.get(lang, "")), right)
        for section in instrument.sections:
            rtl(doc.add_heading(section.title.get(lang, section.id), level=2), right)
            if section.intro:
                rtl(doc.add_paragraph(section.intro.get(lang, "")), right)
            for it in section.items:
                scale = instrument.scales[it.scale]
                if it.relevant:
                    p = doc.add_paragraph()
                    run = p.add_run(f"{_w(lang, 'only_if')}: {routing_text(it.relevant, instrument, lang)}")
                    run.italic = True
                    rtl(p, right)
                p = doc.add_paragraph()
                p.add_run(f"Q{number[it.id]}. ").bold = True
                p.add_run(it.text.get(lang, ""))
                code = p.add_run(f"  [{it.id}]")
                code.font.size = Pt(7)
                code.font.color.rgb = RGBColor(0x88, 0x88, 0x88)
                rtl(p, right)
                if it.help:
                    rtl(doc.add_paragraph(it.help.get(lang, "")), right)
                if scale.is_categorical:
                    for cat in [*scale.categories, *scale.missing]:
                        p = doc.add_paragraph(f"\u2610  {cat.label.get(lang, '')}")
                        p.paragraph_format.left_indent = Pt(18)
                        c = p.add_run(f"  {cat.code}")
                        c.font.size = Pt(7)
                        rtl(p, right)
                else:
                    doc.add_paragraph("_" * 50)
    return atomic_write(Path(path), lambda p: doc.save(str(p)))


def export_paper(instrument, path: str | Path, *, languages: list[str] | None = None) -> Path:
    """HTML or DOCX by the file's extension (.html/.htm or .docx)."""
    path = Path(path)
    if path.suffix.lower() == ".docx":
        return export_paper_docx(instrument, path, languages=languages)
    return export_paper_html(instrument, path, languages=languages)
