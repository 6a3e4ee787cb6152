"""One recoding for the whole suite: reverse keying maps the i-th smallest code to the
i-th largest, which differs from ``max + min - x`` when codes are not consecutive."""

import textwrap

import numpy as np
import pandas as pd
import pytest

YAML = textwrap.dedent(
    """\
    id: gaps
    version: 1.0.0
    title: Codes with a gap (test)
    languages: [en]
    default_language: en
    translations:
      en: {status: reviewed}
    scales:
      gap4:
        type: ordinal
        categories:
          - {code: 1, label: {en: Never}}
          - {code: 2, label: {en: Sometimes}}
          - {code: 3, label: {en: Often}}
          - {code: 5, label: {en: Always}}
        missing:
          - {code: 9, label: {en: Prefer not to say}}
    constructs:
      - {id: HELP, label: Help, definition: test construct, figure1_box: Help}
    sections:
      - id: s1
        title: {en: Items}
        items:
          - {id: HELP1, text: {en: one}, scale: gap4, construct: HELP, reverse: false}
          - {id: HELP2, text: {en: two}, scale: gap4, construct: HELP, reverse: false}
          - {id: HELP3, text: {en: three}, scale: gap4, construct: HELP, reverse: true}
    """
)


@pytest.fixture(scope="module")
def gaps(tmp_path_factory):
    from instruments import load_instrument

    path = tmp_path_factory.mktemp("gaps") / "gaps.yaml"
    path.write_text(YAML, encoding="utf-8")
    return load_instrument(path)


RAW = pd.DataFrame({"HELP1": [1, 2, 3, 5, 9, 4], "HELP2": [5, 3, 2, 1, 1, 2], "HELP3": [1, 2, 3, 5, 9, 4]})


def test_reverse_maps_codes_end_to_end_when_codes_have_a_gap(gaps):
    from instruments.score import clean_items, reverse_codes

    assert reverse_codes([1, 2, 3, 5]) == {1.0: 5.0, 2.0: 3.0, 3.0: 2.0, 5.0: 1.0}
    x = clean_items(RAW, gaps)
    # 2 -> 3 and 3 -> 2 (max + min - x would give 4 and 3: a non-code and a wrong answer)
    assert x["HELP3"].tolist()[:4] == [5.0, 3.0, 2.0, 1.0]
    # 9 (prefer not to say) and 4 (not a code) are missing, never reversed into numbers
    assert np.isnan(x["HELP3"][4]) and np.isnan(x["HELP3"][5])
    assert x["HELP1"].tolist()[:4] == [1.0, 2.0, 3.0, 5.0]
    assert clean_items(RAW, gaps, reverse=False)["HELP3"].tolist()[:4] == [1.0, 2.0, 3.0, 5.0]


def test_reliability_scoring_and_quality_share_the_recoding(gaps):
    from analysis.psychometrics.items import recode_items
    from instruments.score import clean_items, score

    by_reliability = recode_items(RAW, gaps)
    pd.testing.assert_frame_equal(by_reliability, clean_items(RAW, gaps))
    # the construct score is the mean of the recoded items: row 2 is (2 + 3 + 3) / 3 (HELP3's 2 read as 3)
    scored = score(RAW, gaps).table
    assert scored["HELP"][1] == pytest.approx((2 + 3 + 3) / 3)
    with pytest.raises(KeyError, match="HELP4"):
        clean_items(RAW, gaps, ["HELP1", "HELP4"])
