"""Offline, reproducible synthetic FHIR patients for tests and benchmarks (see synthetic/README.md)."""
