"""Every log line about a job carries its id, in the plain and the JSON format."""

import io
import json
import logging
from collections.abc import Iterator

import pytest

from common.logs import configure_logging, job_logger
from common.settings import LogSettings


@pytest.fixture
def root_output() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    output = io.StringIO()
    yield output
    root.handlers[:] = handlers
    root.setLevel(level)


def _configure(output: io.StringIO, json_lines: bool) -> None:
    configure_logging(LogSettings(json=json_lines, level="INFO"), "worker")
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(output)


def test_job_logger_line_carries_the_job_id_as_a_json_field(root_output: io.StringIO) -> None:
    _configure(root_output, json_lines=True)
    job_logger(logging.getLogger("worker.test"), "job-123").warning("attempt %d failed", 2)
    entry = json.loads(root_output.getvalue())
    assert (entry["job_id"], entry["message"], entry["level"]) == ("job-123", "attempt 2 failed", "WARNING")


def test_job_logger_line_carries_the_job_id_in_plain_text(root_output: io.StringIO) -> None:
    _configure(root_output, json_lines=False)
    job_logger(logging.getLogger("worker.test"), "job-123").info("processing")
    logging.getLogger("worker.test").info("no job here")
    first, second = root_output.getvalue().splitlines()
    assert " worker job=job-123 worker.test: processing" in first
    assert "job=" not in second
