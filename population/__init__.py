"""Population scoring on Apache Spark: a FHIR Bulk Data export scored by the online service's own code path.

Used for care-gap worklists, panel management and back-testing a model on past data (`--as-of`). See
docs/population.md; the command is `cds-onnx population score`.
"""
