# %% [markdown]
# ---
# title: "Community resilience: testing Figure 1"
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
import base64
import html
import json
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

BUNDLE = Path(results_dir)
R = json.loads((BUNDLE / "results.json").read_text(encoding="utf-8"))
LOG_PATH = BUNDLE / "run-log.json"
LOG = json.loads(LOG_PATH.read_text(encoding="utf-8")) if LOG_PATH.is_file() else {}
THRESHOLD = R["study"].get("disclosure_threshold", 10)
STEPS = R.get("steps", {})


def md(text):
    display(Markdown(text))


def num(v, digits=3):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    try:
        return f"{float(v):.{digits}f}"
    except (TypeError, ValueError):
        return str(v)


def pval(p):
    if p is None:
        return "–"
    return "< .001" if p < 0.001 else f"{p:.3f}"


def _md_table(df):
    def cell(v):
        v = "–" if v is None or (isinstance(v, float) and v != v) else v
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |", "|" + "|".join("---" for _ in df.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def table(rows, columns=None, caption=None):
    """A table as HTML (the fallback's HTML, Quarto's HTML) and as Markdown (Quarto's DOCX and PDF)."""
    df = pd.DataFrame(rows, columns=columns)
    out = df.to_html(index=False, escape=True, na_rep="–", classes="report-table", border=0)
    text = _md_table(df)
    if caption:
        out = f"<p class='caption'><b>{html.escape(caption)}</b></p>" + out
        text = f"**{caption}**\n\n" + text
    display({"text/html": out, "text/markdown": text}, raw=True)


def figure(rel, alt):
    """A PNG from the bundle: HTML with alt text (for screen readers), the PNG itself for other formats."""
    p = BUNDLE / rel
    if p.is_file():
        b64 = base64.b64encode(p.read_bytes()).decode("ascii")
        tag = f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}" style="max-width:100%">'
        display({"image/png": b64, "text/html": tag}, raw=True, metadata={"image/png": {"alt": alt}})


def failed(*names):
    """A note when a section's steps did not succeed (errors are data, shown here)."""
    bad = [(n, STEPS[n]) for n in names if n in STEPS and STEPS[n]["status"] != "ok"]
    for n, s in bad:
        err = s.get("error", {})
        md(f"> **Not available: {s['title']}** ({s['status']}). {err.get('type', '')}: "
           f"`{err.get('message', '').splitlines()[0] if err.get('message') else ''}`")
    return bool(bad)


def fit_row(name, d):
    f = d["fit"]
    scaled = f.get("cfi.robust") is not None
    return {
        "model": name,
        "chisq": num(f.get("chisq"), 2), "df": num(f.get("df"), 0), "p": pval(f.get("pvalue")),
        "CFI": num(f.get("cfi.robust") if scaled else f.get("cfi")),
        "TLI": num(f.get("tli.robust") if scaled else f.get("tli")),
        "RMSEA": num(f.get("rmsea.robust") if scaled else f.get("rmsea")),
        "RMSEA 90% CI": f"[{num(f.get('rmsea.ci.lower'))}, {num(f.get('rmsea.ci.upper'))}]",
        "SRMR": num(f.get("srmr")), "AIC": num(f.get("aic"), 1), "BIC": num(f.get("bic"), 1),
        "N": num(f.get("ntotal"), 0),
    }


# %% [markdown]
# ## About this report
#
# The chapter's Figure 1 argues that communities navigate towards the
# resources of providers when provision is culturally competent, rests on a
# history of partnership, earns trust and confidence, and is **negotiated**
# with the community rather than imposed top-down; navigation, with the
# community's own capabilities, makes a community resilient. This report tests
# that model on the study's data, beside rival models, and says in plain
# language whether negotiation matters.

# %%
md(f"**Study:** {html.escape(R['study']['title'])} — instrument "
   f"`{R.get('instrument', {}).get('id', '?')}` version {R.get('instrument', {}).get('version', '?')}; "
   f"estimator {R['study']['settings']['estimator']}, missing data: {R['study']['settings']['missing']}; "
   f"seed {R['study']['seed']}. No table or figure shows a count or statistic for fewer than "
   f"{THRESHOLD} respondents; suppressed cells read `[s]`.")
problems = [(n, s) for n, s in STEPS.items() if s["status"] != "ok"]
if problems:
    md("### What failed\n\nThese steps did not produce results; the sections that need them say so.")
    table([{"step": n, "status": s["status"], "error": s.get("error", {}).get("type", ""),
            "message": s.get("error", {}).get("message", "")} for n, s in problems])
else:
    md("Every step of the pipeline succeeded.")

# %% [markdown]
# ## Sample description

# %%
if not failed("import", "describe") and R.get("sample"):
    S = R["sample"]
    md(f"**{S['n']} respondents** were analysed"
       + (f" from {len(R['import']['sources'])} data file(s)." if R.get("import") else "."))
    for key, t in S["tables"].items():
        table([{"category": r["category"], "n": r["n"]} for r in t["rows"]], caption=t["title"])
    for key, ct in S.get("crosstabs", {}).items():
        df = pd.DataFrame(ct["cells"], index=ct["index"], columns=ct["columns"]).reset_index(names=key)
        table(df, caption=ct["title"])
    for key, gm in S.get("group_means", {}).items():
        table([[r[0], r[1]] + [num(v, 2) for v in r[2:]] for r in gm["rows"]], columns=gm["columns"],
              caption=gm["title"] + " (1-5 scales; REPR counts 0-3)")

# %% [markdown]
# ## Item response distributions
#
# Diverging stacked bars, one chart per construct: disagreement to the left of
# zero, agreement to the right, the middle category split across zero. Items
# marked (R) are reverse-keyed and shown as answered.

# %%
if not failed("describe"):
    for fig in R.get("figures", {}).get("item_distributions", []):
        figure(fig["file"], f"Diverging stacked bars of the {fig['construct']} items")
    if R["sample"]["item_distributions"]["n_suppressed"]:
        md(f"{R['sample']['item_distributions']['n_suppressed']} item categories chosen by fewer than "
           f"{THRESHOLD} respondents (or hidden to protect them) have no bar.")

# %% [markdown]
# ## Data-quality flags
#
# Careless-responding indices with the literature's default cut-offs.
# Flagged respondents are **kept** in every analysis; the flags are for the analyst's judgement.

# %%
if not failed("quality", "validate"):
    Q = R["quality"]
    table([{"flag": r["flag"], "rule": r["rule"], "respondents flagged": r["n_flagged"],
            "% of all": num(r["pct_flagged"], 1)} for r in Q["summary"]], caption="Quality flags")
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
    table([{"construct": r["construct"], "items": r.get("n_items"), "n": r.get("n_obs"),
            "alpha": num(r.get("alpha")), "alpha 95% CI": f"[{num(r.get('alpha.ci.lower'))}, {num(r.get('alpha.ci.upper'))}]",
            "omega": num(r.get("omega"))} for r in rel["constructs"]], caption="Internal consistency")
    ave = rel.get("validity", {}).get("ave_cr")
    if ave:
        table([{"construct": r["construct"], "AVE": num(r.get("ave")), "CR": num(r.get("cr"))} for r in ave],
              caption="Convergent validity (AVE, composite reliability)")
    ht = rel.get("validity", {}).get("htmt")
    if ht:
        df = pd.DataFrame(ht).set_index("construct").map(lambda v: num(v, 2)).reset_index()
        table(df, caption="Discriminant validity: HTMT (values below .85 support discriminant validity)")
    for note in rel.get("notes", []):
        md(f"*{html.escape(note)}*")

# %% [markdown]
# ## CFA: fit and loadings
#
# The measurement model of every construct, fitted before any structural path is read.

# %%
if not failed("cfa") and R.get("cfa"):
    C = R["cfa"]
    table([fit_row("measurement", C)], caption="Fit of the measurement model")
    est = pd.DataFrame(C["estimates"])
    load = est[est["op"] == "=~"]
    table([{"construct": r["lhs"], "item": r["rhs"], "estimate": num(r["est"]), "SE": num(r["se"]),
            "std. loading": num(r["std.all"])} for _, r in load.iterrows()], caption="Loadings")

# %% [markdown]
# ## Measurement invariance across groups
#
# Configural, metric (equal loadings), scalar (equal intercepts) and strict
# (equal residuals) models; a step holds when ΔCFI ≥ −.010 and ΔRMSEA ≤ .015
# (Chen 2007). Groups smaller than the study's minimum are left out.

# %%
inv_steps = [n for n in STEPS if n.startswith("invariance:")]
if inv_steps:
    failed(*inv_steps)
else:
    md("*The study names no grouping variables (`groups:` in study.yaml), so invariance was not tested.*")
for g, d in R.get("invariance", {}).items():
    groups = ", ".join(f"{lab} (n = {n})" for lab, n in zip(d.get("group_labels", []), d.get("nobs", [])))
    md(f"**{html.escape(g)}** — groups: {html.escape(groups)}" + (f"; {d['left_out']} group(s) too small to analyse "
                                                                     "were left out" if d.get("left_out") else ""))
    robust = all(s.get("cfi.robust") is not None for s in d["steps"])  # MLR/MLM/WLSMV: scaled and robust
    sfx = (".scaled", ".robust") if robust else ("", "")
    table([{"step": s["name"], "chisq": num(s.get("chisq" + sfx[0]), 2), "df": num(s.get("df" + sfx[0]), 0),
            "CFI": num(s.get("cfi" + sfx[1])), "RMSEA": num(s.get("rmsea" + sfx[1])), "SRMR": num(s.get("srmr"))}
           for s in d["steps"]], caption=f"Invariance ladder across {g}" + (" (scaled and robust)" if robust else ""))
    table([{"from": c["from"], "to": c["to"], "Δchisq": num(c.get("chisq.diff"), 2), "Δdf": num(c.get("df.diff"), 0),
            "p": pval(c.get("pvalue")), "ΔCFI": num(c.get("delta.cfi")), "ΔRMSEA": num(c.get("delta.rmsea")),
            "holds": "yes" if c.get("holds") else "no"} for c in d["comparisons"]],
          caption=f"Comparisons across {g}")
    md(f"Highest level of invariance supported across {html.escape(g)}: **{d.get('highest')}**.")
    part = d.get("partial")
    if part and part.get("error"):
        md(f"*A partial {part['step']} invariance search did not finish: {html.escape(part['error'])}*")
    elif part:
        freed = ", ".join(f"`{f}`" for f in part.get("freed", [])) or "nothing"
        md(f"Partial {part['step']} invariance {'holds' if part.get('holds') else 'does not hold'} after freeing "
           f"{freed} (one constraint at a time, the most offending first); the group comparisons below "
           + ("free the same parameters." if part["step"] == "scalar" and part.get("holds") else "assume full invariance."))
if R.get("figures", {}).get("invariance"):
    figure(R["figures"]["invariance"]["ladder"], "CFI and RMSEA up the invariance ladder")

# %% [markdown]
# ## Figure 1: the structural model
#
# Standardized coefficients; `*` p < .05, `**` p < .01, `***` p < .001;
# dashed arrows are not significant at .05.

# %%
F1 = R.get("models", {}).get("figure1")
if not failed("model:figure1") and F1:
    diagram = R.get("figures", {}).get("path_diagram", {})
    if diagram.get("png"):
        figure(diagram["png"], "Path diagram of figure1 with standardized coefficients")
    est = pd.DataFrame(F1["estimates"])
    reg = est[est["op"] == "~"]
    table([{"path": f"{r['rhs']} → {r['lhs']}", "estimate": num(r["est"]), "SE": num(r["se"]), "p": pval(r["pvalue"]),
            "standardized": num(r["std.all"])} for _, r in reg.iterrows()], caption="Structural paths of figure1")
    latent = set(est.loc[est["op"] == "=~", "lhs"])
    r2 = [r for r in (F1.get("r2") or []) if r.get("lhs") in latent]
    if r2:
        table([{"construct": r.get("lhs"), "R²": num(r.get("r2"))} for r in r2], caption="Variance explained")

# %% [markdown]
# ## Rival models: does negotiation matter?

# %%
fits = [fit_row(n, d) for n, d in R.get("models", {}).items()]
if fits:
    table(fits, caption="Fit of the structural models")
failed(*[n for n in STEPS if n.startswith("model:") or n.startswith("compare:")])
verdict = R.get("verdict")
if verdict:
    md(f"**Verdict.** {html.escape(verdict['text'])}")
for name, c in R.get("comparisons", {}).items():
    rows = []
    for r in c["table"]:
        rows.append({"model": r["model"], "df": num(r.get("df"), 0), "chisq": num(r.get("chisq"), 2),
                     "AIC": num(r.get("aic"), 1), "BIC": num(r.get("bic"), 1),
                     "Δchisq": num(r.get("chisq.diff"), 2), "Δdf": num(r.get("df.diff"), 0), "p": pval(r.get("pvalue"))})
    table(rows, caption=f"Comparison {name.replace('-vs-', ' vs ')}")
    if name != "figure1-vs-top_down":
        md(html.escape(c["verdict"]["text"]))
    if not c.get("nested", True):
        md("*These models are not nested: read AIC and BIC (lower is better), not the chi-square difference.*")

# %% [markdown]
# ## Indirect effects
#
# The chain effects of Figure 1 and the total effects of cultural competence
# and partnership on resilience, with nonparametric bootstrap intervals
# (cases resampled, the model refitted each time).

# %%
B = R.get("bootstrap")
if not failed(*[n for n in STEPS if n.startswith("bootstrap:")]) and B:
    info = B["bootstrap"]
    md(f"{info['ok']} of {info['R']} bootstrap replications converged; {info['ci']} "
       f"{100 * info['level']:.0f}% intervals; seed {info['seed']}."
       + (f" With {info['R']} replications the interval ends are approximate in their last digit; "
          "use 1,000 or more for publication." if info["R"] < 1000 else ""))
    if R["figures"].get("forest"):
        figure(R["figures"]["forest"], "Forest plot of the defined effects with bootstrap intervals")
    table([{"effect": e["effect"], "estimate": num(e["est"], 4), "bootstrap SE": num(e["se"], 4),
            "CI lower": num(e["ci.lower"], 4), "CI upper": num(e["ci.upper"], 4),
            "standardized": num(e.get("std.all"), 3)} for e in B["effects"]], caption="Defined effects")

# %% [markdown]
# ## Do the key paths differ between groups?
#
# `CULT → TRUST` and `TRUST → NAVIG` estimated in each group under scalar
# invariance, with a Wald test that the path is equal across groups.

# %%
gp_steps = [n for n in STEPS if n.startswith("groups:")]
if gp_steps:
    failed(*gp_steps)
else:
    md("*No group comparison: the study names no grouping variables or no structural model.*")
for g, d in R.get("group_paths", {}).items():
    rows = []
    for p in d.get("paths", []):
        row = {"path": f"{p['rhs']} → {p['lhs']}"}
        for k, v in p.items():
            if k.startswith("est."):
                row[f"{k[4:]}"] = num(v)
        row["Wald χ²"] = num(p.get("wald"), 2)
        row["df"] = num(p.get("wald.df"), 0)
        row["p (equal)"] = pval(p.get("wald.pvalue"))
        rows.append(row)
    table(rows, caption=f"Key paths across {g} (unstandardized estimates per group)")

# %% [markdown]
# ## Limitations
#
# * The data are cross-sectional: the paths of Figure 1 are associations
#   consistent with the model, not proof of its causal order.
# * The rival models are not all nested; where they are not, AIC and BIC
#   compare them, and a model that fits better may still be wrong.
# * Missing answers are handled under the missing-at-random assumption (FIML)
#   or by dropping incomplete cases (listwise), as the study file chose.
# * Careless responders are flagged but kept; results with and without them
#   should be compared before publication.
# * Group comparisons rest on (partial) scalar invariance; small groups are left
#   out and every count under the disclosure threshold is suppressed.

# %%
notes = []
if R.get("quality"):
    notes.append(f"Respondents with at least one quality flag: {R['quality'].get('n_any')}.")
if (R.get("cfa") or {}).get("missing", {}).get("method"):
    notes.append(f"Missing data in the CFA: {R['cfa']['missing']['method']}.")
for n in notes:
    md(n)

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
table(rows)
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
