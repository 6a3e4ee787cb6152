"""Shared by every test folder: the helper modules beside this file
(_lavaan_fixture, _fielding_data, _pipeline_study, _web_support) import by name.

The folders mirror the packages: tests/sem, tests/psychometrics, tests/design,
tests/simulation, tests/study, tests/cli, tests/instruments (and its web/).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
