"""fhir_mapping package."""
