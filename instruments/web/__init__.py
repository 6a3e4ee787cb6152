"""A self-hosted web survey served from an instrument definition.

    >>> from instruments.web import create_app
    >>> app = create_app("crs", study_dir="study")     # then: uvicorn, or `resilience serve crs`

See ``docs/web-survey.md``.
"""

from instruments.web.app import create_app
from instruments.web.export import responses_csv, responses_frame, timings_frame, write_responses_csv
from instruments.web.pages import build_pages, check_page
from instruments.web.storage import Storage, StorageError, TokenUsed
from instruments.web.survey import SurveyConfig

__all__ = ["create_app", "SurveyConfig", "build_pages", "check_page", "Storage", "StorageError", "TokenUsed",
           "responses_frame", "responses_csv", "timings_frame", "write_responses_csv"]
