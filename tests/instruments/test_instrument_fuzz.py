"""Random damage to valid instruments never ends in a traceback or an unlocated issue."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from instruments import library_path, parse_instrument

SOURCES = [
    (Path(__file__).parents[1] / "fixtures" / "instruments" / "minimal.yaml").read_text(encoding="utf-8"),
    library_path("crs").read_text(encoding="utf-8"),
]
JUNK = ["", "null", "[]", "{}", "1", "-3.5", "true", "'x'", "[1, 2]", "{a: 1}", "~", "!!binary aGk=",
        "&a x", "*a", "[[1]]", "{[1]: 2}", "9999999999999999999999", ".nan", "2024-01-01"]


def _damage(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(lines))
        line, op = lines[i], rng.random()
        if op < 0.25:
            del lines[i]
        elif op < 0.6 and ":" in line:
            lines[i] = line.split(":")[0] + ": " + rng.choice(JUNK)
        elif op < 0.75:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op < 0.85:
            lines[i] = " " * rng.randint(1, 3) + line
        else:
            j = rng.randrange(len(line) + 1)
            lines[i] = line[:j] + rng.choice(["{", "}", "[", "]", ":", "#", "'", '"', "\t", "- "]) + line[j:]
    return "\n".join(lines)


@pytest.mark.parametrize("seed", range(3))
def test_damaged_instruments_give_located_issues(seed):
    rng = random.Random(seed)
    n_invalid = 0
    for _ in range(150):
        text = _damage(rng, rng.choice(SOURCES))
        inst, report = parse_instrument(text, file="damaged.yaml")
        assert "internal-error" not in report.types, (str(report), text)
        assert all(i.line is not None and i.line >= 1 for i in report.issues), str(report)
        assert (inst is None) == (not report.valid)
        n_invalid += not report.valid
    assert n_invalid > 50  # the damage does break most files
