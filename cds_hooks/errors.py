"""Client errors as CDS Hooks / HTTP expect them: a status code and an OperationOutcome naming the field.

Every error the service raises on purpose is an ApiError; handlers in the app turn it into a response. Nothing a
client sends should ever surface as a 500.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer: HTTP status, a readable message, and the request field it is about."""

    def __init__(self, status: int, message: str, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.code = status, message, field, code

    def body(self) -> dict[str, Any]:
        return operation_outcome(self.message, self.field, self.code)


def operation_outcome(message: str, field: str | None = None, code: str = "invalid",
                      severity: str = "error") -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": message}
    if field:
        issue["expression"] = [field]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def bad_request(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, message, field)
