# %% [markdown]
# ---
# title: "Study report"
# format:
#   html:
#     embed-resources: true
#     toc: true
#   docx: default
#   typst: default
# execute:
#   echo: false
#   warning: false
# jupyter: python3
# ---

# %%
#| tags: [parameters]
results_dir = "results"

# %%
# This report reads only the results bundle that `resilience run` wrote:
# results.json, run-log.json, tables/*.parquet and figures/*. It fits nothing.
# Everything particular to a study (its title, what it asks, its constructs,
# models and hypotheses) comes from the bundle, i.e. from study.yaml and the
# instrument; the template itself names no construct.
import base64
import html
import json
import re
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

BUNDLE = Path(results_dir)
R = json.loads((BUNDLE / "results.json").read_text(encoding="utf-8"))
LOG_PATH = BUNDLE / "run-log.json"
LOG = json.loads(LOG_PATH.read_text(encoding="utf-8")) if LOG_PATH.is_file() else {}
THRESHOLD = R["study"].get("disclosure_threshold", 10)
STEPS = R.get("steps", {})
INST = R.get("instrument") or {}
LANG = INST.get("default_language", "en")
LABELS = {c["id"]: c["label"] for c in INST.get("constructs", [])}
ITEM_TEXT = {it["id"]: it["text"].get(LANG, it["id"]) for c in INST.get("constructs", []) for it in c["items"]}
DESCRIPTIONS = R.get("model_descriptions", {})
SETTINGS = R["study"]["settings"]
COUNTERS = {"Table": 0, "Figure": 0}
CITED = set()

# Methods the report relies on; a key is listed in the references only when cited.
METHODS = {
    "rosseel2012": "Rosseel, Y. (2012). lavaan: An R package for structural equation modeling. "
                   "Journal of Statistical Software, 48(2), 1-36. https://doi.org/10.18637/jss.v048.i02",
    "hu1999": "Hu, L., & Bentler, P. M. (1999). Cutoff criteria for fit indexes in covariance structure "
              "analysis: Conventional criteria versus new alternatives. Structural Equation Modeling, 6(1), 1-55. "
              "https://doi.org/10.1080/10705519909540118",
    "chen2007": "Chen, F. F. (2007). Sensitivity of goodness of fit indexes to lack of measurement invariance. "
                "Structural Equation Modeling, 14(3), 464-504. https://doi.org/10.1080/10705510701301834",
    "cronbach1951": "Cronbach, L. J. (1951). Coefficient alpha and the internal structure of tests. "
                    "Psychometrika, 16(3), 297-334. https://doi.org/10.1007/BF02310555",
    "mcdonald1999": "McDonald, R. P. (1999). Test theory: A unified treatment. Mahwah, NJ: Erlbaum.",
    "fornell1981": "Fornell, C., & Larcker, D. F. (1981). Evaluating structural equation models with "
                   "unobservable variables and measurement error. Journal of Marketing Research, 18(1), 39-50. "
                   "https://doi.org/10.2307/3151312",
    "henseler2015": "Henseler, J., Ringle, C. M., & Sarstedt, M. (2015). A new criterion for assessing "
                    "discriminant validity in variance-based structural equation modeling. Journal of the Academy "
                    "of Marketing Science, 43(1), 115-135. https://doi.org/10.1007/s11747-014-0403-8",
    "meade2012": "Meade, A. W., & Craig, S. B. (2012). Identifying careless responses in survey data. "
                 "Psychological Methods, 17(3), 437-455. https://doi.org/10.1037/a0028085",
    "efron1993": "Efron, B., & Tibshirani, R. J. (1993). An introduction to the bootstrap. New York: "
                 "Chapman & Hall.",
    "enders2001": "Enders, C. K., & Bandalos, D. L. (2001). The relative performance of full information "
                  "maximum likelihood estimation for missing data in structural equation models. Structural "
                  "Equation Modeling, 8(3), 430-457. https://doi.org/10.1207/S15328007SEM0803_5",
    "burnham2004": "Burnham, K. P., & Anderson, D. R. (2004). Multimodel inference: Understanding AIC and BIC "
                   "in model selection. Sociological Methods & Research, 33(2), 261-304. "
                   "https://doi.org/10.1177/0049124104268644",
    "apa2020": "American Psychological Association (2020). Publication manual of the American Psychological "
               "Association (7th ed.).",
}
SHORT = {"rosseel2012": "Rosseel, 2012", "hu1999": "Hu & Bentler, 1999", "chen2007": "Chen, 2007",
         "cronbach1951": "Cronbach, 1951", "mcdonald1999": "McDonald, 1999", "fornell1981": "Fornell & Larcker, 1981",
         "henseler2015": "Henseler et al., 2015", "meade2012": "Meade & Craig, 2012",
         "efron1993": "Efron & Tibshirani, 1993", "enders2001": "Enders & Bandalos, 2001",
         "burnham2004": "Burnham & Anderson, 2004", "apa2020": "APA, 2020"}


def cite(*keys):
    CITED.update(keys)
    return "(" + "; ".join(SHORT[k] for k in keys) + ")"


def md(text):
    display(Markdown(text))


def esc(text):
    return html.escape(str(text))


def listing(names):
    """'A', 'A and B', 'A, B and C'."""
    names = [str(n) for n in names]
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def label(code):
    """A construct's label with its code, as headings and tables name it."""
    return f"{LABELS[code]} ({code})" if code in LABELS else str(code)


def num(v, digits=3):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    try:
        return f"{float(v):.{digits}f}"
    except (TypeError, ValueError):
        return str(v)


def apa(v, digits=2):
    """APA style for values bounded by 1 (correlations, standardized paths, fit indices): no leading zero."""
    text = num(v, digits)
    if text == "–":
        return text
    text = re.sub(r"^-(0\.0+)$", r"\1", text)  # -0.000 is 0: no sign on a value that rounds to zero
    return re.sub(r"^(-?)0\.", r"\1.", text)


def pval(p):
    if p is None or p != p:
        return "–"
    return "< .001" if p < 0.001 else f"{p:.3f}".lstrip("0")


def _md_table(df):
    def cell(v):
        v = "–" if v is None or (isinstance(v, float) and v != v) else v
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |", "|" + "|".join("---" for _ in df.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def table(rows, columns=None, caption=None, anchor=None, note=None):
    """A numbered, captioned table as HTML (HTML reports) and Markdown (DOCX, PDF); returns its number."""
    df = pd.DataFrame(rows, columns=columns)
    COUNTERS["Table"] += 1
    n = COUNTERS["Table"]
    anchor = anchor or f"tbl-{n}"
    out = df.to_html(index=False, escape=True, na_rep="–", classes="report-table", border=0)
    text = _md_table(df)
    if caption:
        out = f"<p class='caption' id='{anchor}'><b>Table {n}.</b> {esc(caption)}</p>" + out
        text = f"**Table {n}.** {caption}\n\n" + text
    if note:
        out += f"<p class='table-note'><i>Note.</i> {esc(note)}</p>"
        text += f"\n\n*Note.* {note}"
    display({"text/html": f"<div class='table-wrap'>{out}</div>", "text/markdown": text}, raw=True)
    return n


def figure(rel, alt, caption):
    """A numbered figure from the bundle: HTML with alt text (screen readers), the PNG for other formats."""
    p = BUNDLE / rel
    if not p.is_file():
        return None
    COUNTERS["Figure"] += 1
    n = COUNTERS["Figure"]
    b64 = base64.b64encode(p.read_bytes()).decode("ascii")
    tag = (f"<figure id='fig-{n}'><img src='data:image/png;base64,{b64}' alt='{esc(alt)}' "
           f"style='max-width:100%'><figcaption><b>Figure {n}.</b> {esc(caption)}</figcaption></figure>")
    display({"image/png": b64, "text/html": tag}, raw=True, metadata={"image/png": {"alt": alt}})
    return n


def failed(*names):
    """A note when a section's steps did not succeed (errors are data, shown here)."""
    bad = [(n, STEPS[n]) for n in names if n in STEPS and STEPS[n]["status"] != "ok"]
    for n, s in bad:
        err = s.get("error", {})
        md(f"> **Not available: {esc(s['title'])}** ({s['status']}). {esc(err.get('type', ''))}: "
           f"`{err.get('message', '').splitlines()[0] if err.get('message') else ''}`")
    return bool(bad)


def fit_row(name, d):
    f = d["fit"]
    scaled = f.get("cfi.robust") is not None
    return {
        "model": name, "N": num(f.get("ntotal"), 0),
        "χ²": num(f.get("chisq"), 2), "df": num(f.get("df"), 0), "p": pval(f.get("pvalue")),
        "CFI": apa(f.get("cfi.robust") if scaled else f.get("cfi"), 3),
        "TLI": apa(f.get("tli.robust") if scaled else f.get("tli"), 3),
        "RMSEA [90% CI]": f"{apa(f.get('rmsea.robust') if scaled else f.get('rmsea'), 3)} "
                          f"[{apa(f.get('rmsea.ci.lower'), 3)}, {apa(f.get('rmsea.ci.upper'), 3)}]",
        "SRMR": apa(f.get("srmr"), 3), "AIC": num(f.get("aic"), 1), "BIC": num(f.get("bic"), 1),
    }


def fit_sentence(d):
    f = d["fit"]
    robust = f.get("cfi.robust") is not None
    cfi = f.get("cfi.robust") if robust else f.get("cfi")
    rmsea = f.get("rmsea.robust") if robust else f.get("rmsea")
    return (f"χ²({num(f.get('df'), 0)}) = {num(f.get('chisq'), 2)}, p {pval(f.get('pvalue')) if pval(f.get('pvalue')).startswith('<') else '= ' + pval(f.get('pvalue'))}, "
            f"CFI = {apa(cfi, 3)}, RMSEA = {apa(rmsea, 3)}, SRMR = {apa(f.get('srmr'), 3)}")


FIXED = "—"  # APA: a fixed parameter has no standard error, interval or p value (not 0.000)


def is_fixed(r):
    return r.get("free", 1) == 0 or r.get("se") in (None, 0)


def estimate_cell(r, digits=3):
    """A free estimate, or 'fixed' for a parameter fixed by the model (its SE is not 0.000, it has none)."""
    return num(r["est"], digits) + (" (fixed)" if is_fixed(r) else "")


def unless_fixed(r, text):
    """A cell of the parameter's sampling error (SE, interval, p): the em dash when it is fixed."""
    return FIXED if is_fixed(r) else text


def beta_ci(r):
    """The 95% interval of a standardized estimate, from its delta-method SE (std.all.se)."""
    se = r.get("std.all.se")
    if se is None or se != se or r.get("std.all") is None:
        return "–"
    return f"[{apa(r['std.all'] - 1.959964 * se)}, {apa(r['std.all'] + 1.959964 * se)}]"


def n_sentence(d):
    """The N behind a fit and why it differs from the sample analysed."""
    f = d.get("fit", {})
    n_model = f.get("ntotal")
    n_sample = (R.get("sample") or {}).get("n")
    if n_model is None or n_sample is None or int(n_model) == int(n_sample):
        return ""
    gone = int(n_sample) - int(n_model)
    if SETTINGS.get("missing") == "listwise":
        return (f" The model uses N = {int(n_model)} of the {int(n_sample)} respondents: the {gone} others left "
                "at least one of its items unanswered (listwise deletion).")
    # under FIML every answer counts, except on an observed predictor (fixed.x, as lavaan): name it
    est = d.get("estimates") or []
    latent = {e["lhs"] for e in est if e["op"] == "=~"}
    outcomes = {e["lhs"] for e in est if e["op"] == "~"}
    missing = ((d.get("missing") or {}).get("missing_by_variable") or {})
    predictors = sorted({e["rhs"] for e in est if e["op"] == "~"} - latent - outcomes)
    named = [f"{missing[v]} without {label(v)}" for v in predictors if missing.get(v)]
    why = (f"{', '.join(named)}, an observed predictor: its missing values are not modelled (fixed.x, as "
           "lavaan), so those respondents are left out" if named
           else f"{gone} had no answer to any of its items")
    return f" The model uses N = {int(n_model)} of the {int(n_sample)} respondents: {why}."


# Readable line length (~80 characters) on screen; in print every table fits the page width
# (small type, wrapping cells, no horizontal overflow) and no figure is split across pages.
STYLE = """<style>
main, .jp-Notebook, body > .container, #quarto-content main { max-width: 52rem; }
.jp-RenderedMarkdown p, .jp-RenderedMarkdown li, main p, main li { max-width: 80ch; }
.table-wrap { overflow-x: auto; }
table.report-table { border-collapse: collapse; font-size: 0.85rem; }
table.report-table td, table.report-table th { padding: 2px 6px; vertical-align: top; text-align: left !important; }
.key-findings { border: 2px solid #2166ac; border-radius: 6px; padding: 0.5rem 1rem; background: #f4f8fc; }
p.caption { margin-bottom: 0.2rem; } p.table-note { font-size: 0.8rem; }
figure img { max-width: 100%; height: auto; }
@media print {
  @page { size: A4; margin: 15mm; }
  body, main, .jp-Notebook { max-width: none !important; margin: 0 !important; padding: 0 !important; }
  .table-wrap { overflow: visible; }
  table.report-table { width: 100% !important; table-layout: fixed; font-size: 7pt; word-break: break-word; }
  table.report-table td, table.report-table th { overflow-wrap: anywhere; }
  figure, img, tr { break-inside: avoid; }
  h2, h3 { break-after: avoid; }
  .jp-InputPrompt, .jp-OutputPrompt, nav, #TOC { display: none !important; }
}
</style>"""
display({"text/html": STYLE, "text/markdown": ""}, raw=True)

BOOT = R.get("bootstrap")
HYP = R.get("hypotheses") or []
# results.json sorts its keys: study.yaml's order of the models comes from its settings
ORDER = [m if isinstance(m, str) else m["name"] for m in SETTINGS.get("models", [])]
MODELS = {n: R["models"][n] for n in sorted(R.get("models", {}), key=lambda n: (ORDER + [n]).index(n))}

# %% [markdown]
# ## Key findings

# %%
findings = []
if R.get("sample"):
    findings.append(f"**{R['sample']['n']} respondents** were analysed.")
# the lead model: the first hypothesis's, else the first structural model of study.yaml
main = next((h["model"] for h in HYP if h["model"] in MODELS), next(iter(MODELS), None))
if main:
    findings.append(f"The model {esc(main)} ({esc(DESCRIPTIONS.get(main, main))}) fits with "
                    f"{fit_sentence(MODELS[main])}; N = {num(MODELS[main]['fit'].get('ntotal'), 0)}.")
    est = pd.DataFrame(MODELS[main]["estimates"])
    reg = est[est["op"] == "~"].copy()
    reg = reg[~reg.apply(is_fixed, axis=1)] if len(reg) else reg  # a path fixed by the model is no finding
    if len(reg):
        reg = reg.reindex(reg["std.all"].abs().sort_values(ascending=False).index).head(3)
        parts = []
        for _, r in reg.iterrows():
            ci = (f", 95% CI [{num(r.get('ci.lower'), 2)}, {num(r.get('ci.upper'), 2)}]"
                  if r.get("ci.lower") is not None and r.get("ci.lower") == r.get("ci.lower") else "")
            parts.append(f"{esc(label(r['rhs']))} → {esc(label(r['lhs']))}: β = {apa(r['std.all'])} "
                         f"(b = {num(r['est'], 2)}{ci}, p {pval(r['pvalue']) if pval(r['pvalue']).startswith('<') else '= ' + pval(r['pvalue'])})")
        findings.append("Strongest paths: " + "; ".join(parts) + ".")
elif R.get("cfa"):
    findings.append(f"The measurement model fits with {fit_sentence(R['cfa'])}.")
if BOOT and BOOT.get("effects"):
    eff = BOOT["effects"]
    info = BOOT["bootstrap"]
    findings.append(f"Defined effects of {esc(BOOT.get('model', ''))} (bootstrap, {info['R']} replications): "
                    + "; ".join(f"{esc(e['effect'])} = {num(e['est'], 3)} [{num(e['ci.lower'], 3)}, "
                                f"{num(e['ci.upper'], 3)}]" for e in eff[:4]) + ".")
for h in HYP:
    if h.get("verdict"):
        findings.append(esc(h["verdict"]["text"].split(". The model")[0]) + ".")
if not findings:
    findings.append("No result is available: see *What failed* below.")
bold = re.compile(r"[*][*](.*?)[*][*]")
box = "".join("<li>" + bold.sub(r"<b>\1</b>", f) + "</li>" for f in findings)
display({"text/html": "<div class='key-findings'><ul>" + box + "</ul></div>",
         "text/markdown": "\n".join("* " + f for f in findings)}, raw=True)

# %% [markdown]
# ## About this study

# %%
if SETTINGS.get("description"):
    md(esc(SETTINGS["description"]))
md(f"**Study:** {esc(R['study']['title'])} — instrument {esc(INST.get('title', INST.get('id', '?')))} "
   f"(`{INST.get('id', '?')}` version {INST.get('version', '?')}); "
   f"estimator {SETTINGS['estimator']} {cite('rosseel2012')}, missing data: {SETTINGS['missing']}"
   + (f" {cite('enders2001')}" if SETTINGS["missing"] == "fiml" else "")
   + f"; seed {R['study']['seed']}. No table or figure shows a count or statistic for fewer than "
   f"{THRESHOLD} respondents; suppressed cells read `[s]`. Numbers follow APA style {cite('apa2020')}.")
# in the order the pipeline ran them, the root causes (failed) before what they took with them (skipped)
STEP_ORDER = R.get("step_order") or list(STEPS)
problems = sorted(((n, s) for n, s in STEPS.items() if s["status"] != "ok"),
                  key=lambda ns: (ns[1]["status"] == "skipped", (STEP_ORDER + [ns[0]]).index(ns[0])))
if problems:
    md("### What failed\n\nThese steps did not produce results; the sections that need them say so.")
    table([{"step": n, "status": s["status"], "error": s.get("error", {}).get("type", ""),
            "message": s.get("error", {}).get("message", "")} for n, s in problems], caption="Steps that failed")
else:
    md("Every step of the pipeline succeeded.")

# %% [markdown]
# ## Constructs

# %%
if INST.get("constructs"):
    langs = INST.get("languages") or [LANG]
    rows = []
    for c in INST["constructs"]:  # one row per item, the construct and its definition on its first row
        for k, it in enumerate(c["items"]):
            rows.append({"construct": f"{c['label']} ({c['id']})" if k == 0 else "",
                         "definition": c["definition"] if k == 0 else "",
                         "item": it["id"] + (" (R)" if it["reverse"] else ""),
                         **{f"wording ({lg})": it["text"].get(lg, "") for lg in langs}})
    md(f"The constructs of the instrument, with each item's wording in {', '.join(langs)}; "
       "(R) marks a reverse-keyed item.")
    table(rows, caption="Construct glossary", anchor="tbl-glossary")

# %% [markdown]
# ## Sample description

# %%
if not failed("import", "describe") and R.get("sample"):
    S = R["sample"]
    md(f"**{S['n']} respondents** were analysed"
       + (f" from {len(R['import']['sources'])} data file(s)." if R.get("import") else "."))
    # the study-wide small-groups rule: names of what was merged or left out, never their sizes
    DISC = R.get("disclosure") or {}
    for var, cats in (DISC.get("handled") or {}).items():
        if DISC.get("small_groups") == "drop":
            md(f"{var}: respondents in categories with fewer than {THRESHOLD} respondents "
               f"({', '.join(cats)}) are left out of every analysis and total.")
        else:  # name only the categories under k, and those they were merged with
            small = (DISC.get("below_k") or {}).get(var, cats)
            joined = [c for c in cats if c not in small]
            md(f"{var}: {esc(listing(small))} {'has' if len(small) == 1 else 'each have'} fewer than {THRESHOLD} "
               f"respondents, so {'it is' if len(small) == 1 else 'they are'} analysed and reported "
               + (f"together with {esc(listing(joined))} " if joined else "together ")
               + f"as *{DISC.get('residual')}*.")
    for key, t in S["tables"].items():
        table([{"category": r["category"], "n": r["n"]} for r in t["rows"]], caption=t["title"])
    for key, ct in S.get("crosstabs", {}).items():
        df = pd.DataFrame(ct["cells"], index=ct["index"], columns=ct["columns"]).reset_index(names=key)
        table(df, caption=ct["title"])
    for key, gm in S.get("group_means", {}).items():
        cols = gm["columns"][:2] + [LABELS.get(c, c) for c in gm["columns"][2:]]
        table([[r[0], r[1]] + [num(v, 2) for v in r[2:]] for r in gm["rows"]], columns=cols,
              caption=gm["title"] + " (item means on the answer scale)")

# %%
# The sample design (study.yaml design:): the weights, effective sample size and design effects, and
# key estimates weighted and unweighted side by side. Cells resting on fewer than THRESHOLD
# respondents (unweighted) are withheld, weighted or not.
DES = R.get("design")
if DES or "design" in STEPS:
    md("## Sample design")
failed("design")
if DES:
    spec = DES["design"]
    parts = [f"weights `{esc(spec['weights'])}`" if spec.get("weights") else "no weights",
             f"{DES['n_psu']} clusters (`{esc(spec['cluster'])}`)" if spec.get("cluster") else "no clusters",
             f"{DES['n_strata']} strata (`{esc(spec['strata'])}`)" if spec.get("strata") else "no strata"]
    md(f"Every estimate, standard error and model below takes the sample design into account: "
       f"{', '.join(parts)}. Standard errors are linearised (Taylor) for means and proportions, and "
       "cluster-robust (sandwich) for the models, whose tests are scaled (MLR) as lavaan does "
       f"with sampling weights {cite('rosseel2012')}.")
    W = DES.get("weights")
    if W:
        md(f"The weights range from {num(W['min'], 2)} to {num(W['max'], 2)} (median {num(W['q50'], 2)}, "
           f"coefficient of variation {num(W['cv'], 2)}): the effective sample size is "
           f"{num(W['kish_n_eff'], 0)} of {W['n']} respondents, a design effect due to weighting of "
           f"{num(W['deff_weighting'], 2)} (Kish).")
    rows = []
    for r in DES["estimates"]:
        what = label(r["variable"]) if r["category"] is None else f"{esc(r['variable'])}: {esc(r['category'])}"
        shown = r["weighted"] is not None
        pct = r["category"] is not None
        fmt = (lambda v: num(100 * v, 1) + "%") if pct else (lambda v: num(v, 2))
        rows.append({"estimate": what, "n": r["n"] if shown else "[s]",
                     "unweighted": fmt(r["unweighted"]) if shown else "[s]",
                     "weighted": fmt(r["weighted"]) if shown else "[s]",
                     "SE (design)": (num(100 * r["se"], 1) if pct else num(r["se"], 3)) if shown else "[s]",
                     "deff": num(r["deff"], 2) if shown and r.get("deff") is not None else "–"})
    if rows:
        table(rows, caption="Key estimates, unweighted and weighted",
              note="Construct scores on the answer scale; shares in percent. SE: design-based (Taylor); "
                   "deff: the design variance over that of a simple random sample of the same size.")
    for sentence in DES.get("sentences", []):
        md(esc(sentence))

# %% [markdown]
# ## Item response distributions
#
# Diverging stacked bars, one chart per construct: disagreement to the left of
# zero, agreement to the right, the middle category split across zero. Items
# marked (R) are reverse-keyed and shown as answered.

# %%
if not failed("describe"):
    for fig in R.get("figures", {}).get("item_distributions", []):
        c = fig["construct"]
        items = [it for cc in INST.get("constructs", []) if cc["id"] == c for it in cc["items"]]
        wording = "; ".join(f"{it['id']}: {it['text'].get(LANG, '')}" for it in items)
        figure(fig["file"], f"Diverging stacked bars of the answers to the {LABELS.get(c, c)} items. {wording}",
               f"Answers to the items of {label(c)}.")
    if (R.get("sample") or {}).get("item_distributions", {}).get("n_suppressed"):
        md(f"{R['sample']['item_distributions']['n_suppressed']} item categories chosen by fewer than "
           f"{THRESHOLD} respondents (or hidden to protect them) have no bar.")

# %% [markdown]
# ## Data-quality flags

# %%
if not failed("quality", "validate"):
    Q = R["quality"]
    md(f"Careless-responding indices with the literature's default cut-offs {cite('meade2012')}. "
       "Flagged respondents are **kept** in every analysis; the flags are for the analyst's judgement.")
    rows = []
    for r in Q["summary"]:
        # a flag nobody could be evaluated on (no timings, no attention check) was not computed: not "0 / 0.0%"
        computed = r.get("n_evaluable") != 0
        why = f" ({r['note']})" if r.get("note") else ""
        rows.append({"flag": r["flag"], "rule": r["rule"],
                     "respondents flagged": r["n_flagged"] if computed else "not computed" + why,
                     "% of all": num(r["pct_flagged"], 1) if computed else "–"})
    table(rows, caption="Quality flags")
    V = R["validation"]
    md(f"Validation against the instrument: {V['n_errors']} error(s) and {V['n_warnings']} warning(s) "
       f"in {V['n_rows']} responses, problems met while reading each file included.")
    if len(V.get("sources") or []) > 1:
        table([{"source": s["source"], "responses": s["n_rows"], "errors": s["n_errors"],
                "warnings": s["n_warnings"]} for s in V["sources"]], caption="Validation by data source")

# %% [markdown]
# ## Reliability and validity

# %%
if not failed("reliability"):
    rel = R["reliability"]
    md(f"Internal consistency as Cronbach's alpha {cite('cronbach1951')} and McDonald's omega "
       f"{cite('mcdonald1999')}.")
    table([{"construct": label(r["construct"]), "items": r.get("n_items"), "n": r.get("n_obs"),
            "α": apa(r.get("alpha")), "α 95% CI": f"[{apa(r.get('alpha.ci.lower'))}, {apa(r.get('alpha.ci.upper'))}]",
            "ω": apa(r.get("omega"))} for r in rel["constructs"]], caption="Internal consistency")
    ave = rel.get("validity", {}).get("ave_cr")
    if ave:
        md(f"Convergent validity: average variance extracted (AVE) and composite reliability {cite('fornell1981')}; "
           "AVE of .50 or more supports convergent validity.")
        table([{"construct": label(r["construct"]), "AVE": apa(r.get("ave")), "CR": apa(r.get("cr"))} for r in ave],
              caption="Convergent validity (AVE, composite reliability)")
    ht = rel.get("validity", {}).get("htmt")
    if ht:
        order = [r["construct"] for r in ht]  # rows and columns in the same (instrument) order
        df = pd.DataFrame(ht).set_index("construct").reindex(index=order, columns=order).map(lambda v: apa(v, 2))
        df.index = [LABELS.get(c, c) for c in df.index]
        df.columns = [LABELS.get(c, c) for c in df.columns]
        md(f"Discriminant validity: the heterotrait-monotrait ratio (HTMT) {cite('henseler2015')}; values "
           "below .85 support discriminant validity.")
        table(df.reset_index(names="construct"), caption="Discriminant validity: HTMT")
    fl = rel.get("validity", {}).get("fornell_larcker")
    if fl:
        order = [r["construct"] for r in fl]
        frame = pd.DataFrame(fl).set_index("construct")
        passes = frame["passes"].map(lambda v: "yes" if v else "no") if "passes" in frame else None
        grid = frame.reindex(columns=order).map(lambda v: apa(v, 2))
        grid.index = [LABELS.get(c, c) for c in grid.index]
        grid.columns = [LABELS.get(c, c) for c in grid.columns]
        if passes is not None:
            grid["criterion met"] = passes.to_numpy()
        md(f"The Fornell-Larcker criterion {cite('fornell1981')}: the square root of each construct's AVE (the "
           "diagonal) should exceed its correlations with every other construct (its row and column).")
        table(grid.reset_index(names="construct"), caption="Discriminant validity: Fornell-Larcker criterion")
    for note in rel.get("notes", []):
        md(f"*{esc(note)}*")

# %% [markdown]
# ## CFA: fit and loadings
#
# The measurement model of every construct, fitted before any structural path is read.

# %%
if not failed("cfa") and R.get("cfa"):
    C = R["cfa"]
    md(f"Fit is read with the usual guides {cite('hu1999')}: CFI and TLI near .95 or above, RMSEA near .06 "
       "or below, SRMR near .08 or below." + n_sentence(C))
    table([fit_row("measurement", C)], caption="Fit of the measurement model")
    est = pd.DataFrame(C["estimates"])
    load = est[est["op"] == "=~"]
    table([{"construct": label(r["lhs"]), "item": r["rhs"], "wording": ITEM_TEXT.get(r["rhs"], ""),
            "estimate": estimate_cell(r), "SE": unless_fixed(r, num(r["se"])),
            "std. loading": apa(r["std.all"])} for _, r in load.iterrows()], caption="Loadings",
          note="The first loading of each construct is fixed to 1 to set its scale; it has no standard error.")

# %%
# Measurement invariance: only for a study with grouping variables (`groups:`).
inv_steps = [n for n in STEPS if n.startswith("invariance:")]
if inv_steps:
    md("## Measurement invariance across groups")
    md("Configural, metric (equal loadings), scalar (equal intercepts) and strict (equal residuals) models. A step "
       f"holds when ΔCFI ≥ −.010 and ΔRMSEA ≤ .015 {cite('chen2007')}; the chi-square difference test is shown "
       "beside it, and where the two disagree the text says so. Groups smaller than the study's minimum are left out.")
    failed(*inv_steps)
for g, d in R.get("invariance", {}).items():
    groups = ", ".join(f"{lab} (n = {n})" for lab, n in zip(d.get("group_labels", []), d.get("nobs", [])))
    md(f"**{esc(g)}** — groups: {esc(groups)}" + (f"; {d['left_out']} group(s) too small to analyse "
                                                 "were left out" if d.get("left_out") else ""))
    robust = all(s.get("cfi.robust") is not None for s in d["steps"])  # MLR/MLM/WLSMV: scaled and robust
    sfx = (".scaled", ".robust") if robust else ("", "")
    table([{"step": s["name"], "χ²": num(s.get("chisq" + sfx[0]), 2), "df": num(s.get("df" + sfx[0]), 0),
            "CFI": apa(s.get("cfi" + sfx[1]), 3), "RMSEA": apa(s.get("rmsea" + sfx[1]), 3),
            "SRMR": apa(s.get("srmr"), 3)}
           for s in d["steps"]], caption=f"Invariance ladder across {g}" + (" (scaled and robust)" if robust else ""))
    table([{"from": c["from"], "to": c["to"], "Δχ²": num(c.get("chisq.diff"), 2), "Δdf": num(c.get("df.diff"), 0),
            "p": pval(c.get("pvalue")), "ΔCFI": apa(c.get("delta.cfi"), 3), "ΔRMSEA": apa(c.get("delta.rmsea"), 3),
            "holds (ΔCFI, ΔRMSEA)": "yes" if c.get("holds") else "no"} for c in d["comparisons"]],
          caption=f"Comparisons across {g}")
    for c in d["comparisons"]:
        p = c.get("pvalue")
        if p is not None and c.get("holds") and p < 0.05:
            md(f"From {c['from']} to {c['to']} the fit indices change little (ΔCFI = {apa(c.get('delta.cfi'), 3)}), "
               f"but the chi-square difference test rejects the constraints (Δχ²({num(c.get('df.diff'), 0)}) = "
               f"{num(c.get('chisq.diff'), 1)}, p {pval(p) if pval(p).startswith('<') else '= ' + pval(p)}): with "
               "this many respondents the test detects small differences; read the level with that caution.")
        elif p is not None and not c.get("holds") and p >= 0.05:
            md(f"From {c['from']} to {c['to']} the chi-square difference test does not reject the constraints "
               f"(p = {pval(p)}), but the fit indices change beyond the cut-offs.")
    md(f"Highest level of invariance supported across {esc(g)}: **{d.get('highest')}**.")
    part = d.get("partial")
    if part and part.get("error"):
        md(f"*A partial {part['step']} invariance search did not finish: {esc(part['error'])}*")
    elif part:
        freed = ", ".join(f"`{f}`" for f in part.get("freed", []))
        state = "holds" if part.get("holds") else "does not hold"
        md(f"Partial {part['step']} invariance {state} "
           + (f"after freeing {freed}" if freed else "without freeing any constraint")
           + " (one constraint at a time, the most offending first); the group comparisons below "
           + ("free the same parameters." if part["step"] == "scalar" and part.get("holds") else "assume full invariance."))
if R.get("figures", {}).get("invariance"):
    figure(R["figures"]["invariance"]["ladder"], "Line chart of CFI and RMSEA at each step of the invariance ladder",
           "CFI and RMSEA up the invariance ladder.")

# %%
# One section per structural model: its path diagram, its paths and its defined (:=) effects.
model_steps = sorted((n for n in STEPS if n.startswith("model:")),
                     key=lambda n: (ORDER + [n.split(":", 1)[1]]).index(n.split(":", 1)[1]))
for step in model_steps:
    name = step.split(":", 1)[1]
    md(f"## Structural model: {esc(name)}\n\n{esc(DESCRIPTIONS.get(name, ''))}")
    if failed(step) or name not in MODELS:
        continue
    M = MODELS[name]
    md(f"Fit: {fit_sentence(M)}." + n_sentence(M))
    diagram = R.get("figures", {}).get("path_diagrams", {}).get(name, {})
    fig_n = None
    if diagram.get("png"):
        fig_n = figure(diagram["png"], f"Path diagram of {name}: arrows between the constructs "
               + ", ".join(LABELS.get(c, c) for c in dict.fromkeys(
                   x for e in M["estimates"] if e["op"] == "~" for x in (e["rhs"], e["lhs"])))
               + ", labelled with standardized coefficients",
               f"Path diagram of {name}: standardized coefficients; * p < .05, ** p < .01, *** p < .001; "
               "dashed arrows are not significant at .05.")
    est = pd.DataFrame(M["estimates"])
    reg = est[est["op"] == "~"]
    has_ci = "ci.lower" in est.columns
    tab_n = table([{"path": f"{label(r['rhs'])} → {label(r['lhs'])}", "b": estimate_cell(r),
                    "SE": unless_fixed(r, num(r["se"])),
                    "95% CI": unless_fixed(r, f"[{num(r.get('ci.lower'))}, {num(r.get('ci.upper'))}]" if has_ci else "–"),
                    "p": unless_fixed(r, pval(r["pvalue"])), "β": apa(r["std.all"]),
                    "β 95% CI": unless_fixed(r, beta_ci(r))}
                   for _, r in reg.iterrows()],
          caption=f"Structural paths of {name}",
          note="b: unstandardized estimate with its 95% confidence interval; β: standardized (std.all), its "
               "interval from the delta-method standard error (lavaan's standardizedSolution)"
               + ("; a path fixed by the model has no standard error or interval (—)." if reg.apply(
                   lambda r: is_fixed(r), axis=1).any() else "."))
    latent = set(est.loc[est["op"] == "=~", "lhs"])
    r2 = [r for r in (M.get("r2") or []) if r.get("lhs") in latent]
    if r2:
        table([{"construct": label(r.get("lhs")), "R²": apa(r.get("r2"))} for r in r2],
              caption=f"Variance explained in {name}")
    defined = est[est["op"] == ":="]
    if len(defined):
        table([{"effect": r["lhs"], "definition": r["rhs"], "estimate": num(r["est"]),
                "SE": unless_fixed(r, num(r["se"])),
                "95% CI": unless_fixed(r, f"[{num(r.get('ci.lower'))}, {num(r.get('ci.upper'))}]" if has_ci else "–"),
                "p": unless_fixed(r, pval(r["pvalue"])), "β": apa(r.get("std.all"))} for _, r in defined.iterrows()],
              caption=f"Defined effects of {name} (delta-method standard errors)")
    md((f"[Figure {fig_n}](#fig-{fig_n}) draws {esc(name)}; " if fig_n else "")
       + f"[Table {tab_n}](#tbl-{tab_n}) lists its paths with their intervals.")

# %%
SENS = R.get("sensitivity")
sens_steps = [n for n in STEPS if n.startswith("sensitivity:")]
if sens_steps:
    md("## Sensitivity: without flagged respondents")
    failed(*sens_steps)
if SENS:
    md(f"The model {esc(SENS['model'])} refitted without the {SENS['n_excluded']} respondents any quality flag "
       f"marked: {fit_sentence(SENS)}. Paths that keep their size and sign do not hang on careless answers.")
    table([{"path": (f"{label(p['rhs'])} → {label(p['lhs'])}" if p["op"] == "~" else p["lhs"]),
            "β (all)": apa(p["std.all"]), "β (without flagged)": apa(p["std.all.clean"]),
            "p (without flagged)": pval(p["pvalue.clean"])} for p in SENS["paths"]],
          caption=f"Paths of {SENS['model']} with and without flagged respondents")

# %%
# Rival models and hypotheses: a section only when there is something to compare or a claim to judge.
fits = [fit_row(n, d) for n, d in MODELS.items()]
compare_steps = [n for n in STEPS if n.startswith("compare:")]
if fits or HYP or compare_steps:
    md("## Rival models and hypotheses")
if fits:
    md(f"Models are compared by AIC and BIC (lower is better) {cite('burnham2004')} and, where one is nested "
       "in the other, by the chi-square difference test.")
    table(fits, caption="Fit of the structural models")
failed(*compare_steps)
for h in HYP:
    v = h.get("verdict")
    if v:
        md(f"**Verdict.** {esc(v['text'])}")
    else:
        md(f"**{esc(h.get('id') or '')} {esc(h['claim'])}**: no verdict, the comparison of {esc(h['model'])} "
           f"with {esc(h['against'])} did not succeed.")
if not HYP and len(MODELS) > 1:
    md("*study.yaml states no hypotheses (`hypotheses:`), so no verdict is written; the comparisons are below.*")
hyp_pairs = {f"{h['model']}-vs-{h['against']}" for h in HYP}
for name, c in R.get("comparisons", {}).items():
    rows = []
    for r in c["table"]:
        rows.append({"model": r["model"], "df": num(r.get("df"), 0), "χ²": num(r.get("chisq"), 2),
                     "AIC": num(r.get("aic"), 1), "BIC": num(r.get("bic"), 1),
                     "Δχ²": num(r.get("chisq.diff"), 2), "Δdf": num(r.get("df.diff"), 0), "p": pval(r.get("pvalue"))})
    table(rows, caption=f"Comparison {name.replace('-vs-', ' vs ')}")
    if name not in hyp_pairs:
        md(esc(c["verdict"]["text"]))
    if not c.get("nested", True):
        md("*These models are not nested: read AIC and BIC (lower is better), not the chi-square difference.*")

# %%
# Defined effects with bootstrap intervals: only for a study that bootstraps (replications >= 2).
boot_steps = [n for n in STEPS if n.startswith("bootstrap:")]
if boot_steps:
    md("## Defined effects: bootstrap intervals")
if boot_steps and not failed(*boot_steps) and BOOT:
    info = BOOT["bootstrap"]
    md(f"The defined effects (`:=`) of {esc(BOOT.get('model', ''))} with nonparametric bootstrap intervals "
       f"{cite('efron1993')}: "
       + ("PSUs resampled within strata (Rao-Wu rescaled bootstrap replicate weights), the model refitted "
          "with each replicate's weights; normal intervals from the replicate standard errors. "
          if info.get("method") == "rao-wu" else "cases resampled, the model refitted each time. ")
       + f"{info['ok']} of {info['R']} replications converged; {info['ci']} {100 * info['level']:.0f}% intervals; "
       f"seed {info['seed']}."
       + (f" With {info['R']} replications the interval ends are approximate in their last digit; "
          "use 1,000 or more for publication." if info["R"] < 1000 else ""))
    if R["figures"].get("forest"):
        figure(R["figures"]["forest"], "Forest plot: each defined effect's estimate as a point with its bootstrap "
               "interval as a line; " + "; ".join(f"{e['effect']} {num(e['est'], 3)}" for e in BOOT["effects"]),
               "Defined effects with bootstrap intervals.")
    table([{"effect": e["effect"], "estimate": num(e["est"], 3), "bootstrap SE": num(e["se"], 3),
            "CI lower": num(e["ci.lower"], 3), "CI upper": num(e["ci.upper"], 3),
            "β": apa(e.get("std.all"), 3)} for e in BOOT["effects"]], caption="Defined effects")

# %%
# Group comparisons of paths: only for a study with groups and a structural model.
gp_steps = [n for n in STEPS if n.startswith("groups:")]
named = SETTINGS.get("group_paths") or []
if gp_steps:
    md("## Do the paths differ between groups?")
    md(("The paths study.yaml names (" + ", ".join(f"`{p}`" for p in named) + ")" if named else
        "Every structural path") + " estimated in each group under (partial) scalar invariance, with a Wald test "
       "that the path is equal across groups.")
    failed(*gp_steps)
for g, d in R.get("group_paths", {}).items():
    rows = []
    for p in d.get("paths", []):
        row = {"path": f"{label(p['rhs'])} → {label(p['lhs'])}"}
        for k, v in p.items():
            if k.startswith("est."):
                row[f"{k[4:]}"] = num(v)
        row["Wald χ²"] = num(p.get("wald"), 2)
        row["df"] = num(p.get("wald.df"), 0)
        row["p (equal)"] = pval(p.get("wald.pvalue"))
        rows.append(row)
    table(rows, caption=f"Paths of {d.get('model', '')} across {g} (unstandardized estimates per group)")

# %%
# Communities (issue 17): with a cluster variable in study.yaml (design: cluster), how much of each
# construct is shared by a community (ICC), and each two-level model's within and between paths
# side by side, with a diagram per level.
ICC = R.get("icc")
TWO = {n: d for n, d in MODELS.items() if any("level" in e for e in d.get("estimates", []))}
if ICC or TWO or "icc" in STEPS:
    md("## Within and between communities")
failed("icc")
if ICC:
    rows = pd.DataFrame(ICC["rows"])
    out = []
    for c, grp in rows.groupby("construct", sort=False):
        items = grp[grp["kind"] == "item"]
        score = grp[grp["kind"] == "construct"]
        out.append({"construct": label(c),
                    "ICC (score)": apa(score["icc"].iloc[0], 3) if len(score) else "–",
                    "design effect": num(score["design_effect"].iloc[0], 2) if len(score) else "–",
                    "ICC of its items": f"{apa(items['icc'].min(), 3)} to {apa(items['icc'].max(), 3)}"
                    if len(items) else "–"})
    md(f"The intraclass correlation (ICC) is the share of a construct's variance that lies between the "
       f"{ICC['n_clusters']} values of `{esc(ICC['cluster'])}` (lavaan's two-level saturated model "
       f"{cite('rosseel2012')}); the design effect 1 + (mean cluster size − 1) × ICC says how much the "
       "clustering inflates the variance of a mean.")
    table(out, caption=f"ICCs by {ICC['cluster']}")
for name, M in TWO.items():
    est = pd.DataFrame(M["estimates"])
    levels = {lev: est[(est["op"] == "~") & (est["level"] == lev)].reset_index(drop=True) for lev in (1, 2)}
    keys = list(dict.fromkeys([(r["lhs"], r["rhs"]) for lev in (1, 2) for _, r in levels[lev].iterrows()]))
    shared_names = {k for k in keys if all(((levels[lev]["lhs"] == k[0]) & (levels[lev]["rhs"] == k[1])).any()
                                           for lev in (1, 2))}
    rows = []
    n_rows = max(len(levels[1]), len(levels[2]))
    if shared_names:   # the same path named at both levels: one row each
        pairs = [(k, k) for k in keys]
    else:              # within and between factors named apart: aligned in the order written
        pairs = [(tuple(levels[1].loc[i, ["lhs", "rhs"]]) if i < len(levels[1]) else None,
                  tuple(levels[2].loc[i, ["lhs", "rhs"]]) if i < len(levels[2]) else None) for i in range(n_rows)]
    seen = set()
    for w, b in pairs:
        if (w, b) in seen:
            continue
        seen.add((w, b))
        row = {}
        for lev, key, tag in ((1, w, "within"), (2, b, "between")):
            hit = levels[lev][(levels[lev]["lhs"] == key[0]) & (levels[lev]["rhs"] == key[1])] if key else []
            if len(hit):
                r = hit.iloc[0]
                row[f"{tag} path"] = f"{label(r['rhs'])} → {label(r['lhs'])}"
                row[f"{tag} b"], row[f"{tag} β"], row[f"{tag} p"] = num(r["est"]), apa(r["std.all"]), pval(r["pvalue"])
            else:
                row[f"{tag} path"], row[f"{tag} b"], row[f"{tag} β"], row[f"{tag} p"] = "–", "–", "–", "–"
        rows.append(row)
    fit = M.get("fit", {})
    md(f"**{esc(name)}** separates the relations among respondents of the same community (within) from the "
       f"relations among community averages (between): SRMR within {apa(fit.get('srmr_within'), 3)}, "
       f"between {apa(fit.get('srmr_between'), 3)}.")
    table(rows, caption=f"Within- and between-community paths of {name}",
          note="b: unstandardized estimate; β: standardized within its level (std.all).")
    for lev, tag in ((1, "within communities"), (2, "between communities")):
        diagram = R.get("figures", {}).get("path_diagrams", {}).get(f"{name} (level {lev})", {})
        if diagram.get("png"):
            figure(diagram["png"], f"Path diagram of {name} {tag}, labelled with standardized coefficients",
                   f"{name}, {tag} (level {lev}): standardized coefficients; * p < .05, ** p < .01, "
                   "*** p < .001; dashed arrows are not significant at .05.")

# %% [markdown]
# ## Limitations

# %%
# Only the limitations of what this study did: no word on rival models or groups it has none of.
limits = []
if model_steps:
    limits.append("The data are cross-sectional: the paths are associations consistent with the models, not "
                  "proof of their causal order.")
if len(MODELS) > 1 or compare_steps:
    limits.append("Rival models that are not nested are compared by AIC and BIC; a model that fits better may "
                  "still be wrong.")
limits.append("Missing answers are handled under the missing-at-random assumption (FIML) or by dropping "
              "incomplete cases (listwise), as the study file chose.")
limits.append("Careless responders are flagged but kept; results with and without them should be compared "
              "before publication.")
if inv_steps or gp_steps:
    limits.append("Group comparisons rest on (partial) scalar invariance; small groups are left out and every "
                  "count under the disclosure threshold is suppressed.")
md("\n".join(f"* {x}" for x in limits))
notes = []
if R.get("quality"):
    notes.append(f"Respondents with at least one quality flag: {R['quality'].get('n_any')}.")
if (R.get("cfa") or {}).get("missing", {}).get("method"):
    notes.append(f"Missing data in the CFA: {R['cfa']['missing']['method']}.")
for n in notes:
    md(n)

# %% [markdown]
# ## References

# %%
refs = sorted(METHODS[k] for k in CITED)
inst_refs = INST.get("references") or []
md("**Methods**\n\n" + "\n".join(f"* {esc(r)}" for r in refs))
if inst_refs:
    md("**The instrument's sources**\n\n" + "\n".join(f"* {esc(r)}" for r in sorted(inst_refs)))

# %% [markdown]
# ## Reproducibility appendix

# %%
md("**Inputs** (sha256)")
rows = [{"input": "study file", "name": R["study"]["file"], "sha256": R["study"].get("sha256")}]
if R.get("instrument"):
    ins = R["instrument"]
    rows.append({"input": f"instrument {ins['id']} {ins['version']}", "name": ins["file"], "sha256": ins["sha256"]})
for s in R.get("inputs", []):
    rows.append({"input": "data", "name": s.get("file") or s.get("store"), "sha256": s.get("sha256")})
for name, h in R.get("model_sha256", {}).items():
    rows.append({"input": "model", "name": name, "sha256": h})
if LOG.get("report_template"):
    rows.append({"input": "report template", "name": LOG["report_template"]["file"],
                 "sha256": LOG["report_template"]["sha256"]})
table(rows, caption="Inputs of this run")
env = LOG.get("environment", {})
pk = env.get("packages", {})
md(f"**Seed:** {R['study']['seed']}. **Suite:** {R['suite']['name']} {R['suite']['version']} "
   f"(code sha256 `{R['suite']['code_sha256'][:16]}…`). **Python:** {env.get('python', '?')}. "
   f"**Quarto:** {env.get('quarto') or 'not installed (rendered by the jupytext/papermill/nbconvert fallback)'}. "
   f"**pandoc:** {env.get('pandoc') or 'not available'}.")
table([{"package": k, "version": v or "not installed"} for k, v in pk.items()], caption="Package versions")
cmd = " ".join(LOG.get("command", []))
md(f"**Command line:** `{cmd}`")
for name, syntax in R.get("model_syntax", {}).items():
    if syntax:
        md(f"**Model `{name}`**\n\n```\n{syntax.strip()}\n```")
