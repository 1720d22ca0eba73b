"""Error types of cotrain.

Every error a user can trigger with bad input is one of these, and its message names the
file, line, key or record id involved and says how to fix it. Library code raises these;
CLIs catch ``CotrainError`` and print the message without a traceback.
"""

from __future__ import annotations


class CotrainError(Exception):
    """Base class for every error cotrain raises on bad user input."""


class ConfigError(CotrainError):
    """A training/eval config (YAML or ``key=value`` override) is invalid."""


class RecordError(CotrainError):
    """A canonical record (one JSONL line) is malformed.

    The message has the form ``<file>:<line>: record <id>: field '<field>': <problem>. <fix>``.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 record_id: str | None = None, field: str | None = None):
        self.path = path
        self.line = line
        self.record_id = record_id
        self.field = field
        where = []
        if path is not None:
            where.append(f"{path}:{line}" if line is not None else str(path))
        if record_id is not None:
            where.append(f"record {record_id!r}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = ": ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class BadRecordError(CotrainError):
    """A record could not be turned into a training sample (missing/corrupt image, text too long).

    Raised by the dataset when ``on_bad_record: raise``; with ``skip`` the reason is counted.
    ``reason`` is a short stable key used in the skip summary (e.g. ``"image_missing"``).
    """

    def __init__(self, message: str, *, reason: str, record_id: str | None = None):
        self.reason = reason
        self.record_id = record_id
        super().__init__(message)


class ModelLoadError(CotrainError):
    """A model/processor directory cannot be loaded (missing files, unsupported family)."""
