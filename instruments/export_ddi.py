"""The codebook as DDI Codebook 2.5 XML (``ddi:codebook:2_5``).

``stdyDscr`` carries the citation (title, id, version) and the anchor-scale
references; ``dataDscr`` has a ``varGrp`` per construct and a ``var`` per item
with its label and question text in every language (``xml:lang``), the
interviewer instruction, the universe (its relevance condition), its value
categories, and missing codes as ``catgry missing="Y"``. Reverse-keyed items
say so in ``notes``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

__all__ = ["DDI_NS", "ddi_codebook", "export_ddi"]

DDI_NS = "ddi:codebook:2_5"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def _sub(parent, tag, text=None, **attrs):
    el = ET.SubElement(parent, f"{{{DDI_NS}}}{tag}", {k: str(v) for k, v in attrs.items()})
    if text is not None:
        el.text = str(text)
    return el


def _texts(parent, tag, texts: dict | None, languages):
    for lang in languages:
        if texts and texts.get(lang):
            _sub(parent, tag, texts[lang], **{_XML_LANG: lang})


def ddi_codebook(instrument) -> ET.ElementTree:
    """The DDI 2.5 codebook as an ElementTree."""
    ET.register_namespace("", DDI_NS)
    langs = list(instrument.languages)
    root = ET.Element(f"{{{DDI_NS}}}codeBook", {"version": "2.5", "ID": instrument.id,
                                                 _XML_LANG: instrument.default_language})
    doc = _sub(root, "docDscr")
    doc_cit = _sub(doc, "citation")
    _sub(_sub(doc_cit, "titlStmt"), "titl", f"Codebook: {instrument.title}")
    study = _sub(root, "stdyDscr")
    cit = _sub(study, "citation")
    titl = _sub(cit, "titlStmt")
    _sub(titl, "titl", instrument.title)
    _sub(titl, "IDNo", instrument.id, agency="resilience")
    ver = _sub(cit, "verStmt")
    _sub(ver, "version", instrument.version)
    info = _sub(study, "stdyInfo")
    if instrument.description:
        _sub(info, "abstract", instrument.description)
    _sub(_sub(info, "sumDscr"), "dataKind", "survey data")
    if instrument.references:
        other = _sub(study, "othrStdyMat")
        for ref in instrument.references:
            _sub(other, "relMat", ref.citation, ID=ref.id)
    data = _sub(root, "dataDscr")
    var_ids = {it.id: f"V{k}" for k, it in enumerate(instrument.items, start=1)}
    for c in instrument.constructs:
        members = [var_ids[it.id] for it in instrument.items_of(c.id)]
        if not members:
            continue
        grp = _sub(data, "varGrp", ID=f"G_{c.id}", type="multipleQuestion", var=" ".join(members), name=c.id)
        _sub(grp, "labl", c.label)
        _sub(grp, "defntn", c.definition)
    for it in instrument.items:
        scale = instrument.scales[it.scale]
        kind = "character" if scale.type in ("text", "date") else "numeric"
        attrs = {"ID": var_ids[it.id], "name": it.id, "intrvl": "contin" if scale.type == "numeric" else "discrete"}
        var = _sub(data, "var", **attrs)  # children in the order the 2.5 schema fixes
        _texts(var, "labl", it.text, langs)
        qstn = _sub(var, "qstn")
        _texts(qstn, "qstnLit", it.text, langs)
        _texts(qstn, "ivuInstr", it.help, langs)
        if scale.type == "numeric" and (scale.min is not None or scale.max is not None):
            rng = _sub(var, "valrng")
            bounds = {}
            if scale.min is not None:
                bounds["min"] = f"{scale.min:g}"
            if scale.max is not None:
                bounds["max"] = f"{scale.max:g}"
            _sub(rng, "range", **bounds)
        if scale.missing:
            inval = _sub(var, "invalrng")
            for code in scale.missing_codes:
                _sub(inval, "item", VALUE=code)
        if it.relevant:
            _sub(var, "universe", f"Asked when: {it.relevant}", clusion="I")
        for cat in scale.categories:
            cg = _sub(var, "catgry")
            _sub(cg, "catValu", cat.code)
            _texts(cg, "labl", cat.label, langs)
        for cat in scale.missing:
            cg = _sub(var, "catgry", missing="Y")
            _sub(cg, "catValu", cat.code)
            _texts(cg, "labl", cat.label, langs)
        fmt = {"type": kind}
        if scale.type == "date":
            fmt["category"] = "date"
            fmt["schema"] = "other"
            fmt["formatname"] = "ISO 8601 date"
        _sub(var, "varFormat", **fmt)
        notes = []
        if it.construct:
            notes.append(f"construct: {it.construct}")
        if it.reverse:
            notes.append("reverse-keyed")
        if it.role != "item":
            notes.append(f"role: {it.role}")
        if it.role == "attention" and it.expected is not None:
            notes.append(f"instructed answer: {it.expected}")
        if notes:
            _sub(var, "notes", "; ".join(notes))
    ET.indent(root)
    return ET.ElementTree(root)


def export_ddi(instrument, path: str | Path) -> Path:
    from instruments.atomic import atomic_write

    tree = ddi_codebook(instrument)
    return atomic_write(Path(path), lambda p: tree.write(p, encoding="UTF-8", xml_declaration=True))
