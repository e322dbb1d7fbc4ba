"""The `cds-onnx` command: run the service, call it as an EHR would, manage keys, models, monitoring and the store.

Each concept's commands live in their own module and register on the groups in `apps`.
"""

from __future__ import annotations

from cds_hooks.cli import invoke, keys, models, monitor, serve  # noqa: F401  (registers the commands)
from cds_hooks.cli import population  # noqa: F401  (registers `population score`)
from cds_hooks.cli import promotion  # noqa: F401  (registers models promote|rollback|history|verify-audit)
from cds_hooks.cli.apps import app
from cds_hooks.cli.common import fail, settings_from

__all__ = ["app", "fail", "main", "settings_from"]


def main() -> None:  # pragma: no cover - entry point
    app()
