"""Logging for every service: one line per event, plain or JSON (LOG_JSON=true).

Log lines about a job carry its id (`job_logger(logger, job_id)`, or `extra={"job_id": ...}` on one
call); the JSON formatter makes it a field and the plain one prefixes it, so `grep <job_id>` follows a
job through every service.
"""

import json
import logging
from datetime import UTC, datetime

from common.settings import LogSettings


class _PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        job_id = getattr(record, "job_id", None)
        record.job = f" job={job_id}" if job_id else ""
        return super().format(record)


class _JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            entry["job_id"] = job_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


JobLogger = logging.LoggerAdapter[logging.Logger]


def job_logger(logger: logging.Logger, job_id: str) -> JobLogger:
    """`logger` writing the job's id on every line."""
    return logging.LoggerAdapter(logger, {"job_id": job_id})


def configure_logging(settings: LogSettings, service: str) -> None:
    handler = logging.StreamHandler()
    if settings.json:
        handler.setFormatter(_JsonFormatter(service))
    else:
        handler.setFormatter(
            _PlainFormatter(f"%(asctime)s %(levelname)s {service}%(job)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())
    logging.getLogger("pika").setLevel(logging.WARNING)
