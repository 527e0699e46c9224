"""Limits for our pyfunc models under ``mlflow models serve``.

MLflow's scoring server reads any request body whole, parses any JSON and lets the model score
any number of rows: a million-row POST keeps a worker busy long after the client got its 504,
and JSON nested deeper than Python's recursion limit is a 500. A model calls
:func:`guard_scoring_server` when it loads and :func:`check_rows` when it predicts, so a body
above ``PIPELINES_SERVING_MAX_BYTES`` is answered 413, nested or malformed JSON 400, and more
than ``PIPELINES_SERVING_MAX_ROWS`` rows 400, each with a message that says what to send.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

MAX_BYTES = 8 * 2**20
MAX_ROWS = 20_000


def limit(name: str, default: int) -> int:
    """``$name`` as a positive integer, else ``default``."""
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() and int(value) > 0 else default


def guard_scoring_server() -> None:
    """Wrap the scoring server's request handler (once per process) with the byte cap and a
    400 for JSON too deeply nested to parse. Outside a scoring server it changes nothing that
    runs: only the server calls that handler."""
    from mlflow.pyfunc import scoring_server

    original = scoring_server.invocations
    if getattr(original, "guarded", False):
        return
    max_bytes = limit("PIPELINES_SERVING_MAX_BYTES", MAX_BYTES)

    def invocations(data: Any, content_type: str, model: Any, input_schema: Any) -> Any:
        if len(data) > max_bytes:
            return answer(
                413,
                f"request body of {len(data)} bytes is over the limit of {max_bytes} "
                "(PIPELINES_SERVING_MAX_BYTES): send the series in parts",
            )
        try:
            return original(data, content_type, model, input_schema)
        except RecursionError:
            return answer(400, "request JSON is nested too deeply to parse")

    invocations.guarded = True
    scoring_server.invocations = invocations


def answer(status: int, message: str) -> Any:
    from mlflow.pyfunc import scoring_server

    body = json.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": message})
    return scoring_server.InvocationsResponse(body, status, "application/json")


def check_rows(rows: int) -> None:
    """A 400 (MLflow's answer to INVALID_PARAMETER_VALUE) above the row cap."""
    max_rows = limit("PIPELINES_SERVING_MAX_ROWS", MAX_ROWS)
    if rows > max_rows:
        raise MlflowException(
            f"{rows} rows are over the limit of {max_rows} per request "
            "(PIPELINES_SERVING_MAX_ROWS): send the series in parts",
            error_code=INVALID_PARAMETER_VALUE,
        )
