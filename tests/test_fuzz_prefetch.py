"""Property-based fuzzing of the real CDS services with FHIR-shaped prefetch: no input may give a 5xx.

A "kitchen sink" record holds resources every shipped model reads (demographics with US Core race, lipids, blood
pressure panels, creatinine, eGFR, UACR, HbA1c, BMI, vitals, NEWS2 observations, conditions, medications, an
encounter). Each example keeps the structure valid (Bundles of resources under the services' own prefetch keys) and
puts hostile values at random places inside the resources: extreme and malformed dates and offsets, wrong JSON types,
huge and tiny numbers, deep nesting, odd unicode, lists where objects belong and the reverse. Every response must be
below 500; bugs found here are fixed in the product (the value is unusable, or a 4xx names the field).

Budget: SERVICES x EXAMPLES_PER_SERVICE service calls here, plus the feedback and schemathesis fuzzers in
tests/test_fuzz_openapi.py, add up to more than 5,000 cases. Derandomized, so a failure reproduces exactly.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fhirfactory as F
from conftest import SignedClient

LOINC, SNOMED = F.LOINC, F.SNOMED
EXAMPLES_PER_SERVICE = 300
CALLS: dict[str, int] = {}  # service id -> fuzzed calls made (checked against the budget)


def kitchen_sink_record() -> list[dict[str, Any]]:
    res = F.pce_record(age=62, gender="male", race="black", smoker=True, diabetes=True, treated=True)
    res += [
        F.quantity_obs("2160-0", 1.3, "mg/dL", display="Creatinine"),
        F.quantity_obs("98979-8", 55, "mL/min/{1.73_m2}", display="eGFR CKD-EPI 2021"),
        F.quantity_obs("9318-7", 120, "mg/g", display="UACR"),
        F.quantity_obs("4548-4", 6.1, "%", display="HbA1c"),
        F.quantity_obs("39156-5", 31.2, "kg/m2", display="BMI"),
        F.quantity_obs("29463-7", 92, "kg", display="Weight"),
        F.quantity_obs("8302-2", 178, "cm", display="Height"),
        F.vital("9279-1", 22, "/min"),
        F.vital("59408-5", 93, "%"),
        F.vital("8867-4", 105, "/min"),
        F.vital("8310-5", 38.4, "Cel"),
        F.vital("8480-6", 101, "mm[Hg]"),
        F.coded_obs("67775-7", "248234008", hours=1),
        F.coded_obs("3150-0", "371908008", hours=1),
        F.condition("49436004", display="Atrial fibrillation"),
        F.condition("84114007", display="Heart failure"),
        F.condition("38341003", display="Hypertension"),
        F.condition("230690007", display="Stroke"),
        F.condition("22298006", display="Myocardial infarction", clinical="resolved"),
        F.condition("J96.12", "http://hl7.org/fhir/sid/icd-10-cm", display="Chronic hypercapnic failure"),
        F.condition("714628002", display="Prediabetes"),
        F.med_request("617312", display="atorvastatin 40 MG", contained=True),
        F.med_request("860975", display="metformin 500 MG"),
        F.encounter("e1"),
        {"resourceType": "Procedure", "id": "proc-1", "status": "in-progress", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": SNOMED, "code": "57485005"}]}, "performedDateTime": F.days_ago(0)},
    ]
    return res


RECORD = kitchen_sink_record()

# ---- hostile values ------------------------------------------------------------------------------------------------
EXTREME_DATES = [
    "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999999Z", "0001-01-01",
    "0000-01-01", "9999", "0001", "2020-02-30", "2021-02-29", "2020-13-01", "2020-00-10", "2020-01-01T24:00:00Z",
    "2020-01-01T23:59:60Z", "2020-01-01T10:00:00+14:01", "2020-01-01T10:00:00-99:00", "2020-01-01T10:00:00+2400",
    "2020-01-01T10:00", "2020-01-01T10", "2020-01-01 10:00:00", "20200101", "2020-W01-1", "2020-001", "+275760-09-13",
    "-0001-01-01", "2020-01-01T10:00:00.1234567890123Z", "2020-1-1", "T", "Z", "", " ", "now", "today()",
    "２０２０-０１-０１", "2020-01-01T10:00:00Z\x00", "2020-01-01\n", "1e10", "NaN",
]
HUGE_NUMBERS = [1e308, -1e308, 1.7976931348623157e308, 5e-324, -0.0, 2**53 + 1, 2**63, -(2**63), 2**64 - 1,
                10**19, 123456789.123456789, 0, -1, 1e-300]
UNICODE = ["", "\u202e\u0645\u0631\u062d\u0628\u0627", "\u200b\u200c\u200d\ufeff", "😀" * 20, "a\x00b", "\udcff"[:0] + "ǅ",
           "\U0010ffff", "Ω≈ç√∫", "mm[Hg]\u0301", "μmol/L", "mg/dL" * 30, "{1.73_m2}", "%", "../../etc/passwd",
           "<script>alert(1)</script>", "'; DROP TABLE predictions; --", "${jndi:ldap://x}", "{{7*7}}"]


def deep(depth: int, inner: Any) -> Any:
    for i in range(depth):
        inner = [inner] if i % 2 else {"x": inner}
    return inner


scalar = st.one_of(
    st.sampled_from(EXTREME_DATES),
    st.sampled_from(HUGE_NUMBERS),
    st.sampled_from(UNICODE),
    st.none(), st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=24),
)
hostile = st.recursive(
    scalar,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children,
                                                                                max_size=3)),
    max_leaves=8,
) | st.builds(deep, st.integers(min_value=10, max_value=200), scalar)

# structural edits at a path inside a resource
EDITS = ["replace", "replace", "replace", "delete", "wrap_list", "unwrap_list", "to_string", "nest"]


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "resourceType" and not prefix:
                continue  # keep it a FHIR resource, so the request gets past the shape check and into the mapping
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*prefix, i)
            yield from paths(value, (*prefix, i))


def apply_edit(resource: dict[str, Any], path: tuple[Any, ...], edit: str, value: Any) -> None:
    parent: Any = resource
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    current = parent[last]
    if edit == "delete":
        if isinstance(parent, dict):
            del parent[last]
        else:
            parent.pop(last)
    elif edit == "wrap_list":
        parent[last] = [current, value]
    elif edit == "unwrap_list":
        parent[last] = current[0] if isinstance(current, list) and current else {"value": current}
    elif edit == "to_string":
        parent[last] = json.dumps(current)[:64]
    elif edit == "nest":
        parent[last] = deep(60, current)
    else:
        parent[last] = value


@st.composite
def hostile_record(draw: Any) -> list[dict[str, Any]]:
    record = copy.deepcopy(RECORD)
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        target = draw(st.integers(min_value=0, max_value=len(record) - 1))
        candidates = list(paths(record[target]))
        if not candidates:
            continue
        path = candidates[draw(st.integers(min_value=0, max_value=len(candidates) - 1))]
        try:
            apply_edit(record[target], path, draw(st.sampled_from(EDITS)), draw(hostile))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit changed the shape under this path
    if draw(st.booleans()):  # a second, hostile patient or an extra hostile resource of a type the models read
        rtype = draw(st.sampled_from(["Patient", "Observation", "Condition", "MedicationRequest",
                                      "MedicationStatement", "Procedure", "Encounter", "Medication"]))
        body = draw(st.dictionaries(st.sampled_from(
            ["id", "status", "code", "valueQuantity", "effectiveDateTime", "birthDate", "gender", "extension",
             "subject", "component", "clinicalStatus", "medicationReference", "contained", "effectivePeriod",
             "deceasedDateTime", "period", "class", "onsetDateTime", "abatementDateTime", "authoredOn"]), hostile,
            max_size=8))
        record.append({"resourceType": rtype, **body})
    return record


def bundle(resources: list[Any], kind: str = "collection") -> dict[str, Any]:
    """A Bundle whose entries carry whatever the (possibly broken) resources are, with a fullUrl when one can be made."""
    entries = []
    for i, res in enumerate(resources):
        entry: dict[str, Any] = {"resource": res}
        if i % 2:
            entry["fullUrl"] = f"urn:uuid:00000000-0000-4000-8000-{i:012d}"
        entries.append(entry)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def prefetch_for(keys: list[str], record: list[dict[str, Any]], layout: str) -> dict[str, Any]:
    patient = next((r for r in record if r.get("resourceType") == "Patient"), None)
    others = [r for r in record if r is not patient]
    out: dict[str, Any] = {}
    first = next((k for k in keys if k != "patient"), None)
    for key in keys:
        if key == "patient":
            out[key] = patient if isinstance(patient, dict) else None
        elif layout == "by-type":  # as an EHR answers each search: the resources of that type
            rtype = key.split("-", 1)[0].lower()
            out[key] = bundle([r for r in others if str(r.get("resourceType", "")).lower() == rtype], "searchset")
        elif key == first:  # everything in one collection Bundle, with a nested Bundle, under one key
            out[key] = bundle([*others, bundle(others[:3])])
        else:
            out[key] = None  # the EHR found nothing for the other searches
    return out


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory, local_key: Any) -> Iterator[SignedClient]:
    from cds_hooks.app import create_app
    from conftest import make_settings

    app = create_app(make_settings(tmp_path_factory.mktemp("fuzz")))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield SignedClient(client, local_key)


def services(fuzz_api: SignedClient) -> dict[str, Any]:
    return fuzz_api.app.state.cds.services


SERVICE_IDS = ["ascvd-pce-10y", "cha2ds2-vasc", "egfr-ckd-epi-2021", "kfre-4var", "news2-encounter-start",
               "news2-patient-view", "prevent-base", "prevent-full", "t2d-onset-5y"]


@pytest.mark.parametrize("service_id", SERVICE_IDS)
def test_hostile_prefetch_never_gives_a_5xx(fuzz_api: SignedClient, service_id: str) -> None:
    service = services(fuzz_api).get(service_id)
    if service is None:
        pytest.skip(f"no service {service_id} in this model repository")
    keys = list(service.plan)
    path = f"/cds-services/{service_id}"
    CALLS[service_id] = 0

    @settings(max_examples=EXAMPLES_PER_SERVICE, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(hostile_record(), st.sampled_from(["by-type", "by-type", "one-key"]))
    def check(record: list[dict[str, Any]], layout: str) -> None:
        body = F.hook_request(prefetch_for(keys, record, layout), hook=service.hook)
        if service.hook == "encounter-start":
            body["context"]["encounterId"] = "e1"
        CALLS[service_id] += 1
        resp = fuzz_api.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert resp.status_code < 500, (resp.status_code, resp.text[:500], json.dumps(body)[:3000])
        if resp.status_code == 200:
            assert isinstance(resp.json().get("cards"), list)

    check()
    assert CALLS[service_id] >= EXAMPLES_PER_SERVICE * 0.9, CALLS


def test_budget_of_fuzzed_service_calls() -> None:
    """The prefetch fuzzer's share of the >= 5,000 cases (the rest: tests/test_fuzz_openapi.py)."""
    assert len(SERVICE_IDS) * EXAMPLES_PER_SERVICE >= 2500
