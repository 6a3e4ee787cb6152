"""read_table: every supported format, sniffing, and errors that name the file."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.sem.data import read_table
from analysis.errors import DataError

HS = Path(__file__).parents[1] / "fixtures" / "data" / "HolzingerSwineford1939.csv"


@pytest.fixture
def small() -> pd.DataFrame:
    return pd.DataFrame({"id": [1, 2, 3], "x1": [1.5, 2.0, np.nan], "x2": [3, 4, 5]})


def test_csv_reads_hs():
    df = read_table(HS)
    assert df.shape == (301, 15)
    assert df["x1"].iloc[0] == pytest.approx(3.333333, abs=1e-6)


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_csv_delimiter_sniffed(tmp_path, small, sep):
    path = tmp_path / "d.csv"
    small.to_csv(path, sep=sep, index=False)
    df = read_table(path)
    assert list(df.columns) == ["id", "x1", "x2"]
    assert df["x2"].tolist() == [3, 4, 5]


def test_csv_bom_and_cp1252(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffitem,name\n1,Zoë\n2,Jürgen\n".encode("utf-8"))
    df = read_table(path)
    assert list(df.columns) == ["item", "name"]
    assert df["name"].tolist() == ["Zoë", "Jürgen"]
    path2 = tmp_path / "latin.csv"
    path2.write_bytes("item;name\n1;Café\n".encode("cp1252"))
    df2 = read_table(path2)
    assert df2["name"].iloc[0] == "Café"


def test_csv_utf16(tmp_path):
    path = tmp_path / "u16.csv"
    path.write_bytes("a,b\n1,2\n".encode("utf-16"))
    assert read_table(path)["b"].iloc[0] == 2


def test_xlsx_sav_dta_parquet_roundtrip(tmp_path, small):
    small.to_excel(tmp_path / "d.xlsx", index=False)
    small.to_stata(tmp_path / "d.dta", write_index=False)
    small.to_parquet(tmp_path / "d.parquet")
    import pyreadstat

    pyreadstat.write_sav(small, str(tmp_path / "d.sav"))
    for name in ("d.xlsx", "d.dta", "d.parquet", "d.sav"):
        df = read_table(tmp_path / name)
        assert list(df.columns) == ["id", "x1", "x2"], name
        assert df["x1"].iloc[1] == 2.0, name
        assert np.isnan(df["x1"].iloc[2]), name


def test_missing_file_named():
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        read_table("nope.csv")


def test_empty_file_named(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        read_table(path)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("{}")
    with pytest.raises(DataError, match=r"data\.json: unknown data format '\.json'"):
        read_table(path)


@pytest.mark.parametrize("name,fmt", [("bad.xlsx", "XLSX"), ("bad.sav", "SAV"),
                                      ("bad.dta", "DTA"), ("bad.parquet", "PARQUET")])
def test_corrupt_binary_files_named(tmp_path, name, fmt):
    path = tmp_path / name
    path.write_bytes(b"this is not really a " + fmt.encode() + b" file\n" * 20)
    with pytest.raises(DataError) as err:
        read_table(path)
    assert str(err.value).startswith(str(path) + ":")
    assert "XLSX" in str(err.value) or f"as {fmt}" in str(err.value)


def test_binary_file_as_csv(tmp_path):
    path = tmp_path / "oops.csv"
    path.write_bytes(b"\x00\x01\x02PK\x00" * 50)
    with pytest.raises(DataError, match=r"oops\.csv: looks like a binary file"):
        read_table(path)


def test_malformed_csv_names_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(DataError, match=r"ragged\.csv: malformed CSV .*line 3"):
        read_table(path)


def test_duplicate_columns(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("x1,x1,x2\n1,2,3\n")
    with pytest.raises(DataError, match=r"dup\.csv: duplicated column names: x1"):
        read_table(path)


def test_semicolon_csv_with_decimal_commas(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text("id;x1;x2;name\n1;3,5;2;a\n2;-1,25;;b\n3;4;5;c\n")
    df = read_table(path)
    assert df["x1"].tolist() == [3.5, -1.25, 4.0]
    assert np.isnan(df["x2"].iloc[1])
    assert df["name"].tolist() == ["a", "b", "c"]
