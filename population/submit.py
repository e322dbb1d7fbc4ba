"""The script spark-submit runs: `spark-submit [spark options] population/submit.py score --input ... --service ...`.

spark-submit starts a Python file, not a console script; this one runs `cds-onnx population` with the arguments
given, in the session spark-submit configured (master, executors, Python environment).
"""

from __future__ import annotations

import sys

from cds_hooks.cli import app

if __name__ == "__main__":
    app(args=["population", *sys.argv[1:]], prog_name="cds-onnx")
