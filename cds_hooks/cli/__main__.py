"""`python -m cds_hooks.cli`."""

from cds_hooks.cli import app

app(prog_name="cds-onnx")
