"""Grouping an export by patient in Spark: every patient's resources in one place, with the Medications they
reference joined in, so the mapper sees what the online service sees for the same patient.

Medication resources belong to no patient; a MedicationRequest or MedicationStatement names one by
medicationReference. Only the (patient, Medication) pairs actually referenced are joined, so a formulary of any size
costs one shuffle, not a copy per patient.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyspark import RDD

from population.ndjson import MEDICATION, PATIENT, Line

# One patient's input: (resource texts in export order, referenced Medication texts keyed "Medication/<id>")
PatientRecord = tuple[list[str], dict[str, str]]


def patient_groups(lines: RDD[Line], partitions: int) -> RDD[tuple[str, PatientRecord]]:
    """(patient id, record) for every patient with at least one resource in the export."""
    scoped = lines.filter(lambda ln: ln.kind == PATIENT)
    medications = lines.filter(lambda ln: ln.kind == MEDICATION).map(lambda ln: (ln.key, (ln.file, ln.line, ln.text)))
    wanted = scoped.filter(lambda ln: ln.medication_ref is not None).map(
        lambda ln: (ln.medication_ref, ln.key)).distinct(partitions)
    joined = wanted.join(medications, partitions).map(
        lambda kv: (kv[1][0], (1, kv[0], *kv[1][1])))
    own = scoped.map(lambda ln: (ln.key, (0, "", ln.file, ln.line, ln.text)))
    return own.union(joined).groupByKey(partitions).mapValues(_record)


def _record(items: Iterable[tuple[int, str, str, int, str]]) -> PatientRecord:
    """Resources in (file, line) order, so a patient's result never depends on how Spark shuffled the export; of a
    Medication exported twice under one id, the first in file order is kept."""
    resources: list[str] = []
    medications: dict[str, str] = {}
    for kind, ref, _, _, text in sorted(items, key=lambda it: it[:4]):
        if kind == 0:
            resources.append(text)
        else:
            medications.setdefault(ref, text)
    return resources, medications
