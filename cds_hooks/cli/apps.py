"""The Typer command groups, in one place so that each concept's module registers its commands on them."""

from __future__ import annotations

import typer

app = typer.Typer(help="cds-onnx: FHIR-native CDS Hooks service for validated ONNX clinical models.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)
keys_app = typer.Typer(help="Signing keys for calling CDS services.", no_args_is_help=True)
models_app = typer.Typer(help="The model repository.", no_args_is_help=True)
monitor_app = typer.Typer(help="Monitoring report, outcome import and seismometer export.", no_args_is_help=True)
store_app = typer.Typer(help="The prediction and feedback store.", no_args_is_help=True)
population_app = typer.Typer(help="Population scoring of a FHIR Bulk Data export on Apache Spark.",
                             no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")
app.add_typer(monitor_app, name="monitor")
app.add_typer(store_app, name="store")
app.add_typer(population_app, name="population")
