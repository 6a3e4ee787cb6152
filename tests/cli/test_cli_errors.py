"""One error policy for every `resilience` command (instruments/cli/errors.py).

Exit 2 for a wrong use of the command, 1 when the data, model, instrument or study is
wrong, 3 (with the traceback) for a bug; under --json exactly one document
{"error": {"type", "kind", "message"[, "errors"]}} on stdout; otherwise one line
"Error: ..." on stderr. The commands are enumerated from the app, so a new command is
covered without editing this file.
"""

import ast
import json
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from analysis.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
HS = ROOT / "tests" / "fixtures" / "data" / "HolzingerSwineford1939.csv"
HS_MODEL = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9\n"
runner = CliRunner()


def _commands():
    """(command path, has --json) of every leaf command of `resilience --help`."""
    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in sorted(subs.items()):
                yield from walk(sub, path + [name])
        else:
            yield path, any(p.name == "as_json" for p in cmd.params)

    return list(walk(typer.main.get_command(app), []))


COMMANDS = _commands()


def _one_error_document(res, kind):
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, res.stdout          # exactly one document, nothing else on stdout
    doc = json.loads(lines[0])
    assert list(doc) == ["error"]
    err = doc["error"]
    assert {"type", "kind", "message"} <= set(err) and err["kind"] == kind and err["message"], err
    return err


def test_every_command_is_enumerated():
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"fit", "compare", "run", "import", "instrument validate", "instrument export", "power"} <= names
    assert len(names) >= 25


@pytest.mark.parametrize("path,has_json", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_a_wrong_option_is_a_usage_error_exit_2(path, has_json):
    res = runner.invoke(app, [*path, "--no-such-option", "1"])
    assert res.exit_code == 2, res.output
    assert res.stdout == ""
    assert res.stderr.startswith("Error: No such option: --no-such-option"), res.stderr
    if has_json:
        res = runner.invoke(app, [*path, "--no-such-option", "1", "--json"])
        assert res.exit_code == 2
        err = _one_error_document(res, "usage")
        assert err["type"] == "NoSuchOption" and "--no-such-option" in err["message"]


@pytest.mark.parametrize("args,needle", [
    (["fit", str(HS), "-m", "hs", "--estimator", "GLS"], "--estimator must be one of ML, MLR"),
    (["fit", str(HS), "-m", "hs", "--missing", "sometimes"], "--missing must be listwise, fiml or pairwise"),
    (["fit", "-m", "hs"], "no data: give a data file or --study"),
    (["compare", str(HS), "-m", "hs"], "compare needs at least two --model options"),
    (["power", "--n", "50,abc", "--reps", "2"], "--n must be comma-separated whole numbers"),
    (["describe", str(HS)], "name at least one column with --vars or --categorical"),
    # option values the library refused as bad input (exit 1), named by their CLI option
    (["efa", str(HS), "--instrument", "crs", "--rotation", "foo"], "--rotation must be one of oblimin, promax"),
    (["efa", str(HS), "--instrument", "crs", "--n-factors", "0"], "--n-factors must be at least 1; got 0"),
    (["fit", str(HS), "-m", "hs", "--group", "school", "--group-equal", "loadings,foo"],
     "--group-equal takes loadings, intercepts, means"),
    (["report", str(HS.parent), "--format", "html,foo"], "--format takes html, docx, pdf; got 'foo'"),
    (["fit", str(HS), "-m", "hs", "--se", "foo"], "--se must be one of default, standard"),
    (["fit", str(HS), "-m", "hs", "--ordered", "all", "--parameterization", "x"], "--parameterization must be one of delta, theta"),
    (["invariance", str(HS), "-m", "hs", "-g", "school", "--partial", "foo"], "--partial must be one of metric"),
    (["power", "-m", "hs", "--n", "100", "--reps", "0"], "'--reps'"),
])
def test_wrong_option_values_exit_2_in_the_one_shape(args, needle):
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 2, res.output
    err = _one_error_document(res, "usage")
    assert needle in err["message"] and res.stderr == ""
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith(f"Error: {err['message']}")


def test_a_bad_model_file_exits_1_naming_file_and_line(tmp_path):
    bad = tmp_path / "bad.lav"
    bad.write_text("visual =~ x1 + x2 + x3\ntextual =~ x4 + + x5\n")
    for command in (["fit", str(HS), "-m", str(bad)], ["compare", str(HS), "-m", "hs", "-m", str(bad)]):
        res = runner.invoke(app, [*command, "--json"])
        assert res.exit_code == 1, res.output
        err = _one_error_document(res, "input")
        assert err["type"] == "ModelSyntaxError" and err["message"].startswith(f"{bad}: line 2, col")
        plain = runner.invoke(app, command)
        assert plain.exit_code == 1 and plain.stderr.startswith(f"Error: {bad}: line 2, col")
        assert "Traceback" not in plain.output


def test_a_bad_model_file_is_named_by_the_commands_that_pass_it_on(tmp_path):
    # invariance, power and simulate hand the model to the library; its syntax error names the file
    bad = tmp_path / "bad.lav"
    bad.write_text("visual =~ x1 + x2 +\ntextual =~ x4 + x5 + x6\n")
    for command in (["invariance", str(HS), "-m", str(bad), "-g", "school"],
                    ["power", "-m", str(bad), "--n", "100", "--reps", "2"],
                    ["power", "-m", "hs", "--analysis", str(bad), "--n", "100", "--reps", "2"],
                    ["simulate", "-i", "crs", "-m", str(bad), "--n", "10", "--seed", "1", "-o", str(tmp_path / "x.csv")]):
        res = runner.invoke(app, command)
        assert res.exit_code == 1, (command, res.output)
        assert res.stderr.startswith(f"Error: {bad}: line 2, col 9: unexpected '=~'"), (command, res.stderr)
    assert not (tmp_path / "x.csv").exists()


def test_invariance_an_absent_group_names_the_data_file():
    res = runner.invoke(app, ["invariance", str(HS), "-m", "hs", "-g", "nosuch"])
    assert res.exit_code == 1 and res.stderr.startswith(f"Error: {HS}: grouping column 'nosuch' is not in the data")


def test_bad_data_exits_1_naming_the_file(tmp_path):
    res = runner.invoke(app, ["fit", str(tmp_path / "nope.csv"), "-m", "hs", "--json"])
    assert res.exit_code == 1
    err = _one_error_document(res, "input")
    assert err["type"] == "DataError" and err["message"] == f"{tmp_path / 'nope.csv'}: file not found"
    text = tmp_path / "text.csv"
    text.write_text("x1,x2,x3\n1,2,3\n2,three,4\n3,4,5\n4,5,7\n")
    res = runner.invoke(app, ["fit", str(text), "-m", "f =~ x1 + x2 + x3", "--json"])
    assert res.exit_code == 1
    err = _one_error_document(res, "input")
    assert err["message"].startswith(f"{text}: ") and "'x2' is not numeric: row 2 has 'three'" in err["message"]


def test_located_problems_are_listed_with_file_line_column_field(tmp_path):
    bad = tmp_path / "inst.yaml"
    bad.write_text("id: x\nversion: 1.0\ntitle: T\nitems: 3\n")
    res = runner.invoke(app, ["import", str(HS), "-i", str(bad), "--json"])
    assert res.exit_code == 1
    err = _one_error_document(res, "input")
    assert err["type"] == "InstrumentError" and err["errors"]
    assert all({"file", "line", "column", "field", "message"} <= set(e) for e in err["errors"])
    assert any(e["line"] is not None and e["field"] for e in err["errors"]), err["errors"]
    plain = runner.invoke(app, ["import", str(HS), "-i", str(bad)])
    lines = plain.stderr.splitlines()
    assert plain.exit_code == 1 and lines[0].startswith("Error: ") and len(lines) == 1 + len(err["errors"])


def test_an_internal_error_is_not_disguised(monkeypatch):
    import analysis.sem.fit

    def broken(*args, **kwargs):
        raise KeyError("a bug in the engine")

    monkeypatch.setattr(analysis.sem.fit, "fit_sem", broken)
    res = runner.invoke(app, ["fit", str(HS), "-m", "hs", "--json"])
    assert res.exit_code == 3
    err = _one_error_document(res, "internal")
    assert err["type"] == "KeyError" and "please report" in err["message"]
    assert "Traceback" in res.stderr and "a bug in the engine" in res.stderr
    res = runner.invoke(app, ["fit", str(HS), "-m", "hs"])
    assert res.exit_code == 3 and "Traceback" in res.stderr
    assert not any(line.startswith("Error: ") for line in res.stderr.splitlines())   # not a user's mistake
    assert res.stderr.splitlines()[-1].startswith("Internal error (a bug, not your input): KeyError")


def test_every_command_takes_inline_model_syntax(tmp_path):
    model = tmp_path / "hs.lav"
    model.write_text(HS_MODEL)
    inline = runner.invoke(app, ["fit", str(HS), "-m", HS_MODEL, "--json"])
    from_file = runner.invoke(app, ["fit", str(HS), "-m", str(model), "--json"])
    shipped = runner.invoke(app, ["fit", str(HS), "-m", "hs", "--json"])
    assert inline.exit_code == from_file.exit_code == shipped.exit_code == 0, inline.output
    chisq = {json.loads(r.stdout)["fit"]["chisq"] for r in (inline, from_file, shipped)}
    assert len(chisq) == 1 and abs(chisq.pop() - 85.306) < 1e-3
    res = runner.invoke(app, ["compare", str(HS), "-m", HS_MODEL, "-m", HS_MODEL + "visual ~~ 0*textual\n",
                              "--json"])
    assert res.exit_code == 0, res.output


def test_fit_parses_the_model_once(monkeypatch):
    import sys

    import analysis.sem.syntax as syntax

    real, calls = syntax.parse_model, []

    def counting(text):
        calls.append(text)
        return real(text)

    for module in list(sys.modules.values()):
        if (getattr(module, "__name__", "") or "").startswith("analysis") and \
                getattr(module, "parse_model", None) is real:
            monkeypatch.setattr(module, "parse_model", counting)
    res = runner.invoke(app, ["fit", str(HS), "-m", "hs", "--json"])
    assert res.exit_code == 0, res.output
    assert len(calls) == 1


def test_bootstrap_goes_through_fit_sem_and_gives_bootstrap_fits_numbers():
    from analysis.sem.bootstrap import bootstrap_fit
    from analysis.sem.fit import fit_sem
    import pandas as pd

    res = runner.invoke(app, ["fit", str(HS), "-m", HS_MODEL, "--bootstrap", "20", "--seed", "5", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    boot = bootstrap_fit(fit_sem(HS_MODEL, pd.read_csv(HS)), n_boot=20, seed=5)
    direct = boot.params.set_index(["lhs", "op", "rhs"])
    for e in doc["estimates"]:
        row = direct.loc[(e["lhs"], e["op"], e["rhs"])]
        assert e["se"] == pytest.approx(row["se"], rel=1e-10, abs=1e-12)
        assert e["ci.lower"] == pytest.approx(row["ci.lower"], rel=1e-10, abs=1e-12)
    assert doc["bootstrap"]["R"] == 20 and doc["model"]["options"]["se"] == "bootstrap"


def test_no_fallback_hides_a_missing_module():
    """A renamed module must fail loudly: no `except ImportError` / `ModuleNotFoundError` in the CLI."""
    found = []
    for folder in (ROOT / "analysis" / "cli", ROOT / "instruments" / "cli"):
        for path in folder.glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ExceptHandler) and node.type is not None:
                    names = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
                    if names & {"ImportError", "ModuleNotFoundError"}:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


# user mistakes the QA run found ending as internal errors (exit 3): each is a bad option value
@pytest.mark.parametrize("args,needle", [
    (["power", "--instrument", "crs", "--model", "figure1", "--n", "50", "--reps", "2", "--workers", "0"],
     "'--workers'"),
    (["power", "--instrument", "crs", "--model", "figure1", "--n", "50", "--reps", "2", "--workers", "-2"],
     "'--workers'"),
    (["design-power", "-m", "figure1", "--path", "NAVIG ~ NEGOT", "--designs", "5x10", "--reps", "2",
      "--workers", "0"], "'--workers'"),
    (["fit", str(HS), "-m", HS_MODEL, "--bootstrap", "3", "--scheduler", "notaurl"],
     "--scheduler 'notaurl' is not a Dask scheduler address"),
    (["power", "--instrument", "crs", "--model", "figure1", "--n", "50", "--reps", "2", "--scheduler", "tcp://host"],
     "--scheduler 'tcp://host' is not a Dask scheduler address"),
    (["fit", str(HS), "-m", HS_MODEL, "--bootstrap", "3", "--scheduler", "http://10.0.0.5:8786"],
     "unknown scheme 'http'"),
    (["serve", "crs", "--port", "99999"], "'--port'"),
    (["serve", "crs", "--port", "-1"], "'--port'"),
])
def test_bad_option_values_found_by_qa_exit_2(args, needle):
    res = runner.invoke(app, args)
    assert res.exit_code == 2, (res.output, res.exception)
    assert res.stdout == "" and res.stderr.startswith("Error: ") and needle in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_unreachable_well_formed_scheduler_exits_1_naming_it():
    # a closed port on this machine: refused at once, an input error naming the address
    res = runner.invoke(app, ["fit", str(HS), "-m", HS_MODEL, "--bootstrap", "3", "--scheduler",
                              "tcp://127.0.0.1:1", "--json"])
    assert res.exit_code == 1, res.output
    err = _one_error_document(res, "input")
    assert err["type"] == "ExecutionError" and "tcp://127.0.0.1:1" in err["message"]


@pytest.mark.parametrize("url,needle", [
    ("notaurl", "notaurl is not a usable database URL"),
    ("postgresql://bob:secret@127.0.0.1:1/x", "postgresql://bob:***@127.0.0.1:1/x"),
])
def test_serve_export_bad_database_url_exits_1_without_the_password(url, needle, tmp_path):
    res = runner.invoke(app, ["serve-export", "crs", "-o", str(tmp_path / "web.csv"), "--database-url", url])
    assert res.exit_code == 1, (res.output, res.exception)
    assert res.stderr.startswith("Error: ") and needle in res.stderr and "secret" not in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "web.csv").exists()


def test_the_library_refuses_workers_and_scheduler_as_option_errors():
    from analysis.errors import OptionError
    from analysis.execution import ExecutionOptionError, check_scheduler, run_replications
    from analysis.simulation.design_power import design_power
    from analysis.simulation.power import power_analysis

    with pytest.raises(OptionError, match="workers"):
        power_analysis("figure1", n=[50], reps=2, instrument="crs", workers=0)
    with pytest.raises(OptionError, match="not a Dask scheduler address"):
        power_analysis("figure1", n=[50], reps=2, instrument="crs", scheduler="notaurl")
    with pytest.raises(OptionError, match="workers"):
        design_power("figure1", "NAVIG ~ NEGOT", [(5, 10)], reps=2, workers=-1)
    with pytest.raises(ExecutionOptionError, match="workers"):
        run_replications(lambda c, r, i: i, 2, seed=1, workers=0)
    assert check_scheduler("tcp://10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    assert check_scheduler("10.0.0.5:8786") == "10.0.0.5:8786"
    for bad in ("notaurl", "tcp://host", "tcp://:8786", "ftp://h:1", "tcp://h:port"):
        with pytest.raises(ExecutionOptionError):
            check_scheduler(bad)


def test_simulate_a_negative_n_names_the_option(tmp_path):
    res = runner.invoke(app, ["simulate", "--instrument", "crs", "--n", "-3", "--seed", "1", "-o", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "'--n'" in res.stderr and "simulate_responses" not in res.stderr
    assert not (tmp_path / "x.csv").exists()


def test_a_binary_data_file_is_named_once(tmp_path):
    junk = tmp_path / "junk.csv"
    junk.write_bytes(b"a,b\n\x00\x01\x02\n")
    res = runner.invoke(app, ["reliability", str(junk), "-i", "crs"])
    assert res.exit_code == 1, res.output
    assert res.stderr.startswith(f"Error: {junk}: binary content") and res.stderr.count("junk.csv") == 1
