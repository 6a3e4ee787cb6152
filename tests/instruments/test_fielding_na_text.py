"""'NA' is a missing marker in number and code columns, but a real answer in free text."""

from instruments import load_instrument
from instruments.ingest import import_responses


def test_na_is_missing_for_codes_and_kept_as_free_text(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text("respondent_id,CONSENT,TRUST1,TRUST2,AREA\n1,1,NA,NULL,NA\n2,1,3,.,North\n")
    result = import_responses(path, load_instrument("crs"))
    assert result.data["TRUST1"].isna().tolist() == [True, False]
    assert result.data["TRUST2"].isna().tolist() == [True, True]
    assert result.data["AREA"].tolist() == ["NA", "North"]  # a place called "NA" is not lost
    assert not [i for i in result.issues if getattr(i, "item", None) in ("TRUST1", "TRUST2")]
