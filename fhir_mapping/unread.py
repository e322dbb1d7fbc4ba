"""What a search the EHR did not answer in full does to values derived from what it would have held.

Exists because a derived value is computed by the mapper from the features' values, before the service learns
which searches could not be obtained or were cut short (cds_hooks/service_call.py). A value derived from a "No"
answered without one of its searches is not fully checked either; one derived from an input made unknown has no
value — unless no value of that input could change it (`hba1c_diabetes_range * (1 - diabetes)` is 0 for a diabetic
patient whatever the HbA1c). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import product

from fhir_mapping.expressions import ExpressionError, compiled_expression
from fhir_mapping.result import NOTHING_ON_RECORD, FeatureValue, MappingResult, MissingFeature
from fhir_mapping.spec import FeatureSpec


def carry_into_derived(spec: FeatureSpec, mapping: MappingResult, unknown: list[str]) -> None:
    """`unknown`: features made unknown after mapping (a search not obtained, or cut short). Each purely derived
    feature (no sources of its own) resting on one is missing, naming it, unless the value stands whatever that
    input is; one resting on a "No" not fully checked carries that "No"'s `unchecked` prefetch keys."""
    gone = list(unknown)
    for name in spec.derivation_order():
        fv = mapping.values.get(name)
        inputs = sorted(spec.derived_inputs(name))
        lost = [i for i in inputs if i in gone]
        if fv is None:
            _unknown_not_absent(spec, mapping, name, lost, gone)
            continue
        if spec.features[name].sources:
            continue  # a feature read from the record as well may stand on its own results
        if lost and not _stands_whatever(spec, name, fv, lost, mapping):
            del mapping.values[name]
            feature = spec.features[name]
            mapping.missing[name] = MissingFeature(name=name, label=feature.label, required=feature.required,
                                                   reason="", unread=mapping.missing[lost[0]].unread)
            _from_unknown(spec, mapping, name, lost[0])
            gone.append(name)
            continue
        keys = [k for i in inputs if (v := mapping.values.get(i)) is not None and (v.defaulted or v.unchecked)
                for k in v.unchecked]
        if keys:
            fv.unchecked = list(dict.fromkeys([*fv.unchecked, *keys]))


def _unknown_not_absent(spec: FeatureSpec, mapping: MappingResult, name: str, lost: list[str],
                        gone: list[str]) -> None:
    """A derived feature with no value, said to have nothing on record, whose input was not read in full (an eGFR
    whose creatinine search was cut short): unknown, not absent, naming that input."""
    missing = mapping.missing.get(name)
    if not lost or missing is None or not missing.reason.startswith(NOTHING_ON_RECORD):
        return
    # the lost inputs could have given a value only if every other input has one, follows a lost one (an age on the
    # day of the creatinine) or is one no test gives (a sex not recorded): a BMI with no height on record stays
    # "nothing on record" whatever the weight, and is the only case where a test may be ordered
    if any(i not in mapping.values and i not in lost and spec.features[i].on_date_of not in lost
           and spec.features[i].demographic is None for i in spec.derived_inputs(name)):
        return
    mapping.missing[name] = replace(missing, unread=mapping.missing[lost[0]].unread)
    _from_unknown(spec, mapping, name, lost[0])
    gone.append(name)


def _from_unknown(spec: FeatureSpec, mapping: MappingResult, name: str, lost: str) -> None:
    """'Unknown: computed from Serum creatinine, which is unknown (<why>)', as the missing feature's reason."""
    mapping.missing[name].reason = f"Unknown: computed from {spec.features[lost].label}, which is unknown " \
                                   f"({mapping.missing[lost].reason})"


def _stands_whatever(spec: FeatureSpec, name: str, fv: FeatureValue, lost: list[str], mapping: MappingResult) -> bool:
    """Whether the derived value is the same for every value the lost inputs can take: decided without them
    (`Expression.decided_without`), or, for yes/no inputs (`value: exists`), the same both ways; any other leaves the
    value unknown."""
    feature = spec.features[name]
    if feature.derived is None or feature.derived_only_if:
        return False
    known = {i: v.value for i in spec.derived_inputs(name) if (v := mapping.values.get(i)) is not None}
    expression = compiled_expression(feature.derived)
    if expression.decided_without({i: v for i, v in known.items() if i not in lost}) == fv.value:
        return True  # decided whatever the lost inputs are, quantities included (x * (1 - diabetes), diabetic)
    if any(spec.features[i].value != "exists" for i in lost):
        return False
    for combination in product((0.0, 1.0), repeat=len(lost)):
        try:
            if expression.evaluate({**known, **dict(zip(lost, combination, strict=True))}) != fv.value:
                return False
        except ExpressionError:
            return False
    return True
