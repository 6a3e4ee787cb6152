"""The demo's study file: FIML with 200 bootstrap replications by default, listwise with 500."""

from analysis.study.spec import load_study


def test_demo_defaults_to_fiml_with_fewer_replications(tmp_path):
    from analysis.study.demo import create_demo_study

    st = load_study(create_demo_study(tmp_path / "fiml", n=100))
    assert st.missing == "fiml" and st.bootstrap.replications == 200
    st = load_study(create_demo_study(tmp_path / "lw", n=100, missing="listwise"))
    assert st.missing == "listwise" and st.bootstrap.replications == 500
    st = load_study(create_demo_study(tmp_path / "r", n=100, replications=50))
    assert st.missing == "fiml" and st.bootstrap.replications == 50
