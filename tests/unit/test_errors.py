"""The error hierarchy's contract, which the CLI and the serving app render: no services."""

from __future__ import annotations

import json

from modelyard.errors import ModelNotFound, UserError, YardError


def test_an_error_is_one_line_with_its_exit_code_and_http_status() -> None:
    error = ModelNotFound(name="churn")
    assert error.message == "Model 'churn' not found" == str(error)
    assert (error.exit_code, error.http_status) == (3, 404)
    assert isinstance(error, UserError) and isinstance(error, YardError)
    assert json.loads(json.dumps(error.to_dict())) == {
        "error": "ModelNotFound", "message": "Model 'churn' not found"}

