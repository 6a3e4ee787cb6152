"""A real Dask cluster on loopback (one scheduler, two workers started as
subprocesses) gives exactly the results of the serial run and the local pool."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from analysis.execution import ExecutionError, run_replications

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs: list[subprocess.Popen]) -> None:
    procs = procs[::-1]  # workers first, then the scheduler
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + 3
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    distributed = pytest.importorskip("distributed")
    log_dir = tmp_path_factory.mktemp("dask")
    env = dict(os.environ)
    # workers import this test module (for the task functions) and the suite
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent), env.get("PYTHONPATH", "")])
    env["DASK_DISTRIBUTED__WORKER__DAEMON"] = "False"
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []

    def start(args, name):
        log = open(log_dir / f"{name}.log", "wb")
        procs.append(
            subprocess.Popen([sys.executable, "-m", *args], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        )

    try:
        start(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
               "--dashboard-address", "127.0.0.1:0"], "scheduler")
        for k in range(2):
            start(["distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers", "1",
                   "--no-nanny", "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0",
                   "--name", f"w{k}"], f"worker{k}")
        client = None
        deadline = time.time() + 60
        while time.time() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            try:
                client = distributed.Client(address, timeout="5s", set_as_default=False)
                client.wait_for_workers(2, timeout=max(1, deadline - time.time()))
                break
            except (OSError, TimeoutError):
                if client is not None:
                    client.close()
                    client = None
                time.sleep(0.5)
        if client is None or len(client.scheduler_info()["workers"]) < 2:
            logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(log_dir.glob("*.log")))
            pytest.fail(f"Dask cluster did not start within 60 s:\n{logs}")
        client.close()
        yield address
    finally:
        _stop(procs)


def noisy_mean(context, rng, i):
    """A trivial replication: mean of a seeded sample, tagged with the worker's pid."""
    x = context["scale"] * rng.standard_normal(context["size"])
    return (i, float(x.mean()), os.getpid())


def test_dask_equals_local_pool_and_serial(dask_cluster):
    ctx = {"scale": 3.0, "size": 50}
    serial = run_replications(noisy_mean, 40, seed=2024, context=ctx, backend="serial", progress=False)
    pool = run_replications(noisy_mean, 40, seed=2024, context=ctx, backend="processes", workers=2, progress=False)
    dask = run_replications(noisy_mean, 40, seed=2024, context=ctx, scheduler=dask_cluster, progress=False)
    values = [r[1] for r in serial]
    assert [r[0] for r in dask] == list(range(40))
    assert [r[1] for r in pool] == values
    assert [r[1] for r in dask] == values
    # the work really ran in the two worker processes, not here
    pids = {r[2] for r in dask}
    assert os.getpid() not in pids and len(pids) == 2
    # and the numbers are the ones SeedSequence child i gives
    child3 = np.random.SeedSequence(2024).spawn(40)[3]
    assert values[3] == pytest.approx(float((3.0 * np.random.default_rng(child3).standard_normal(50)).mean()))


def test_bad_scheduler_address_is_a_clear_error():
    port = _free_port()  # nothing listens there
    with pytest.raises(ExecutionError, match=f"Cannot reach the Dask scheduler at 'tcp://127.0.0.1:{port}'"):
        run_replications(noisy_mean, 2, seed=1, context={"scale": 1.0, "size": 2},
                         scheduler=f"tcp://127.0.0.1:{port}", progress=False)


# ---------------------------------------------------------------- local pool

def test_results_do_not_depend_on_worker_count_or_chunking():
    ctx = {"scale": 1.5, "size": 7}
    ref = run_replications(noisy_mean, 23, seed=7, context=ctx, backend="serial", progress=False)
    for workers, cpw in [(1, 1), (2, 4), (3, 9)]:
        got = run_replications(noisy_mean, 23, seed=7, context=ctx, backend="processes", workers=workers,
                               chunks_per_worker=cpw, progress=False)
        assert [g[1] for g in got] == [r[1] for r in ref]
    other = run_replications(noisy_mean, 23, seed=8, context=ctx, backend="serial", progress=False)
    assert other[0][1] != ref[0][1]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="'n' parameter of run_replications must be an int >= 0. Got -1"):
        run_replications(noisy_mean, -1, seed=1)
    with pytest.raises(ValueError, match="'backend' parameter .* Got 'threads'"):
        run_replications(noisy_mean, 2, seed=1, backend="threads")
    with pytest.raises(ValueError, match="needs a scheduler address"):
        run_replications(noisy_mean, 2, seed=1, backend="dask")


_CTRL_C_SCRIPT = r"""
import os, signal, sys, time
# as at a terminal: a shell's background job (make test ... &) starts with Ctrl-C ignored
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, sys.argv[1])
from analysis.execution import run_replications

def slow(ctx, rng, i):
    with open(os.path.join(ctx, f"{os.getpid()}.pid"), "w"):
        pass
    time.sleep(600)

try:
    run_replications(slow, 8, seed=1, context=sys.argv[2], backend="processes", workers=2, progress=False)
except KeyboardInterrupt:
    print("interrupted cleanly", flush=True)
    sys.exit(130)
"""


def test_ctrl_c_stops_the_pool_and_its_workers(tmp_path):
    import signal

    script = tmp_path / "run.py"
    script.write_text(_CTRL_C_SCRIPT)
    # Own session, so a failure below can still kill the whole group (no orphaned workers).
    proc = subprocess.Popen([sys.executable, str(script), str(ROOT), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while len(list(tmp_path.glob("*.pid"))) < 2 and time.time() < deadline:
            time.sleep(0.1)
        pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
        assert len(pids) == 2, "the two workers never started"
        proc.send_signal(signal.SIGINT)
        # The tasks sleep 600 s: ending well before that means the pool did not wait for them.
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "interrupted cleanly" in out
    time.sleep(0.5)
    for pid in pids:  # no orphaned workers left running
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_dask_bootstrap_equals_local_bootstrap(dask_cluster):
    import pandas as pd

    from analysis.sem.bootstrap import bootstrap_fit
    from analysis.sem.fit import fit_sem

    data = pd.read_csv(ROOT / "tests" / "fixtures" / "data" / "PoliticalDemocracy.csv")
    fit = fit_sem((ROOT / "analysis" / "models" / "poldem.lav").read_text(), data, warn=False)
    local = bootstrap_fit(fit, n_boot=30, seed=77, workers=2, progress=False)
    remote = bootstrap_fit(fit, n_boot=30, seed=77, scheduler=dask_cluster, progress=False)
    pd.testing.assert_frame_equal(local.draws, remote.draws)
    pd.testing.assert_frame_equal(local.params, remote.params)
    assert remote.n_boot == 30 and remote.n_failed == local.n_failed


def _cli_json(args):
    import json

    from typer.testing import CliRunner

    from analysis.cli.main import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_power_with_labelled_effects_on_the_cluster_equals_the_local_run(dask_cluster):
    """`power --scheduler` with figure1's labelled := effects (the workers once failed with KeyError 't_cult')."""
    args = ["power", "--instrument", "crs", "--model", "figure1", "--n", "300", "--reps", "6",
            "--seed", "5", "--json"]
    local = _cli_json([*args, "--workers", "1"])
    remote = _cli_json([*args, "--scheduler", dask_cluster])
    assert remote == local
    effects = {row["effect"] for row in remote["results"]} if "results" in remote else set()
    assert not effects or any(":=" in e or "_" in e for e in effects)


def test_fit_bootstrap_of_a_shipped_model_with_defined_effects_on_the_cluster(dask_cluster, tmp_path):
    """`fit --bootstrap --scheduler` with figure1 (labelled paths and := effects) equals the local run."""
    sim = tmp_path / "sim.csv"
    from typer.testing import CliRunner

    from analysis.cli.main import app

    made = CliRunner().invoke(app, ["simulate", "--instrument", "crs", "--model", "figure1", "--n", "400",
                                    "--seed", "3", "-o", str(sim)])
    assert made.exit_code == 0, made.output
    args = ["fit", str(sim), "--model", "figure1", "--instrument", "crs", "--bootstrap", "20", "--seed", "9",
            "--json"]
    local = _cli_json(args)
    remote = _cli_json([*args, "--scheduler", dask_cluster])
    assert remote["estimates"] == local["estimates"]
    defined = [r for r in remote["estimates"] if r["op"] == ":="]
    assert defined and all(r["se"] is not None and r["se"] > 0 for r in defined)


def test_defined_parameters_survive_pickling():
    """The := evaluator holds no closure state, so it works unchanged after a trip to a worker."""
    import pickle

    import pandas as pd

    from analysis.sem.defined import DefinedParameters
    from analysis.sem.fit import fit_sem

    data = pd.read_csv(ROOT / "tests" / "fixtures" / "data" / "PoliticalDemocracy.csv")
    model = ("ind60 =~ x1 + x2 + x3\ndem60 =~ y1 + y2 + y3 + y4\ndem60 ~ a*ind60\n"
             "y1 ~~ b*y1\nab := a*b\nabc := ab/b + 1\n")
    fit = fit_sem(model, data, warn=False)
    dp = DefinedParameters(fit.params)
    x = fit.params.loc[fit.params["free"] > 0].drop_duplicates("free").sort_values("free")["est"].to_numpy()
    again = pickle.loads(pickle.dumps(dp))
    np.testing.assert_array_equal(again.values(x), dp.values(x))
    a = float(fit.params.query("label == 'a'")["est"].iloc[0])
    b = float(fit.params.query("label == 'b'")["est"].iloc[0])
    np.testing.assert_allclose(dp.values(x), [a * b, a + 1], rtol=1e-12)


def broken_replication(context, rng, i):
    """A replication whose bug surfaces as a bare KeyError on the worker."""
    return {"a": 1}[context["missing"]]


def test_a_worker_error_reaches_the_user_as_a_sentence(dask_cluster):
    for kwargs in ({"scheduler": dask_cluster}, {"backend": "processes", "workers": 2}):
        with pytest.raises(ExecutionError, match=r"A replication failed on .*\(KeyError: 't_cult'\)"):
            run_replications(broken_replication, 4, seed=1, context={"missing": "t_cult"}, progress=False, **kwargs)
