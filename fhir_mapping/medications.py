"""Recognise what drug a MedicationRequest or MedicationStatement is about, the way real records write it.

Real records name a drug at any RxNorm term type (ingredient, clinical or branded product, pack), by a local or NDC
code with a display, by free text, or through `medicationReference` to a contained, bundled or fetched Medication
with its own code and ingredients. A drug class (data in drugclasses/<id>.yaml) is recognised by:

1. an RxNorm code in one of the class's published code lists (each records its source and date), or
2. the name of one of the class's ingredients (or a brand name) in a display or text of the drug, since RxNorm names
   are systematic ("amlodipine 5 MG Oral Tablet", "... [Norvasc]") and so are most EHR drug names.

Dose forms that do not act systemically (eye drops, topical) never count, whether the drug's name, the Medication's
`form`, or the order's route or instructions (to the eye or ear) say so: timolol drops for glaucoma are not blood
pressure treatment. A drug of the class is recognised but not counted when it is a product licensed only for
something else (`not_counted_products`: guanfacine extended-release for ADHD) or when every reason the order gives
(`reasonCode`, or the Condition a `reasonReference` names) is one of the class's other uses (`other_uses`:
spironolactone for acne, metformin for prediabetes), by its code or, when no code is in the sets, in its words.
Every match says how it was made, so a card can show it, and a drug that matches nothing stays "not recognised" —
never silently "not taking".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fhir_mapping.index import Resource, ResourceIndex, as_list, codings
from fhir_mapping.memo import remembered
from fhir_mapping.mentions import MentionRule, concept_texts
from fhir_mapping.valuesets import ICD10_SYSTEMS, ValueSet, parse_valueset

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


class DrugClassError(ValueError):
    """A drug class file is missing or malformed."""


@dataclass(frozen=True)
class Ingredient:
    name: str
    atc: str
    group: str
    counted: bool = True  # False: recognised and named, but not evidence of the class (see not_counted)


#: Distinct medication descriptions whose recognition a drug class remembers before it starts afresh.
RECOGNITION_MEMO_SIZE = 20_000


@dataclass(frozen=True)
class Recognition:
    """How a drug was recognised as a member of a class."""

    ingredients: tuple[str, ...]
    drug: str  # the drug as the record names it
    how: str  # "RxNorm code 197361", "ingredient name", "brand name Norvasc", "Medication.ingredient"
    counted: bool = True
    not_counted_reason: str | None = None

    def describe(self) -> str:
        return f"{self.drug} (recognised by {self.how})"


@dataclass(frozen=True)
class LimitedUse:
    """Another use that holds only for some drugs of a class (`other_uses.limited`): rate control for a beta blocker,
    diltiazem or verapamil, not for amlodipine; oedema for a diuretic."""

    use: str
    ingredients: frozenset[str]  # folded ingredient names it holds for
    code_sets: tuple[ValueSet, ...]  # its ICD-10 codes as a prefix set, its other codes as an exact one
    words: MentionRule | None

    def holds_for(self, ingredients: tuple[str, ...]) -> bool:
        """Every ingredient of the drug has this use: atenolol-chlorthalidone for AF is still blood pressure
        treatment (the thiazide does not control the rate)."""
        return bool(ingredients) and self.ingredients.issuperset(ingredients)

    def coded(self, system: str, code: str) -> bool:
        return any(vs.lookup(system, code) for vs in self.code_sets)


@dataclass(frozen=True)
class StatedReason:
    """One reason an order or statement gives: its codings, and its words (the text, the displays, a reference's
    display), for a reason written without a code the class can read."""

    codings: tuple[tuple[str, str, str | None], ...]
    texts: tuple[str, ...] = ()


@dataclass
class MedicationView:
    """Everything the record says about which drug a medication resource is."""

    codings: list[tuple[str, str, str | None]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    ingredient_codings: list[tuple[str, str, str | None]] = field(default_factory=list)
    unresolved_reference: str | None = None
    entered_in_error: bool = False
    forms: list[str] = field(default_factory=list)  # Medication.form, as written
    routes: list[DosageRoute] = field(default_factory=list)  # each dosage's route and instructions, as written
    reasons: list[StatedReason] = field(default_factory=list)  # each stated reason's codings and words

    @property
    def name(self) -> str:
        """The drug's name for a card: the first display or text the record gives."""
        for _, _, display in self.codings:
            if display:
                return display
        if self.texts:
            return self.texts[0]
        for system, code, _ in self.codings:
            return f"{_system_label(system)} {code}"
        if self.unresolved_reference:
            return f"{self.unresolved_reference} (not retrieved)"
        return "unnamed medication"


# Routes that say a drug is not taken to act on the whole body: to the eye or to the ear (SNOMED CT route codes, or
# words in the route's name). Instructions say so only in their first clause, where a sig says how the drug is given
# ("Instill 1 drop OU BID", "1 gtt qAM OD", "gutt. i OU", "Put drops in both eyes", "Use in both eyes"): the later
# clauses are warnings and follow-ups ("hold if SBP drops into the 90s", "report eye pain", "repeat GTT in 3 months")
# that name drops, eyes, OD or a glucose tolerance test in other senses. A first clause that names a way by mouth
# ("10 drops by mouth") is never local, nor is a drug named as an oral tablet or capsule, whatever it says.
LOCAL_ROUTE_CODES = {"54485002": "ophthalmic route", "10547007": "otic route"}
_EYE_OR_EAR = r"ophthalmic|ophth|opth|ocular|intraocular|eyes?|otic|ears?|auricular|conjunctival"
_ROUTE_NAME_WORDS = re.compile(rf"(?<![a-z0-9])({_EYE_OR_EAR}|ou|os|od)(?![a-z0-9])")
_DROPS = r"(gtts?|gutt\.?|drops?)"
_COUNT = r"(\d+(-\d+)?|i{1,3}|one|two|three)"
_VERB = r"(instil+\w*|place|put|use|apply)"
_FIRST_CLAUSE = re.compile(r"[;\n]|\.\s+(?=[A-Z])")  # 'gutt. i OU' and 'o.u.' stay whole
_GIVES_DROPS = re.compile(rf"^\W*(({_VERB}\s+)?{_COUNT}\s*{_DROPS}(?![a-z])|{_VERB}\s+an?\s+{_DROPS}(?![a-z])|"
                          rf"{_DROPS}\s+{_COUNT}(?![a-z])|instil)")
_INTO_EYE_OR_EAR = re.compile(r"(?<![a-z])(in|into|to)\s+(the\s+|each\s+|both\s+|affected\s+|left\s+|right\s+|"
                              r"l\s+|r\s+)*(eyes?|ears?|ou|os|od|re|le)(?![a-z0-9])|(?<![a-z])bilaterally(?![a-z])")
_USES_DROPS = re.compile(rf"^\W*({_VERB}|{_DROPS})(?![a-z])")
_SYSTEMIC_ROUTE = re.compile(r"(?<![a-z0-9])(oral|orally|by mouth|po|p\.o\.?|per os|sublingual|transdermal|"
                             r"intravenous|iv|subcutaneous|intramuscular)(?![a-z0-9])")
SYSTEMIC_ROUTE_CODES = frozenset({"26643006", "37839007", "45890007", "47625008", "34206005", "78421000"})
_ORAL_FORM = re.compile(r"(?<![a-z0-9])(oral|tablets?|tabs?|capsules?|caps?|chewable|lozenges?)(?![a-z0-9])")


def _puts_drops_in_eye_or_ear(text: str) -> bool:
    """The sig's first clause gives drops (a number of them, or instils) or puts something into an eye or ear, and
    names no way by mouth."""
    first = _FIRST_CLAUSE.split(text.strip(), maxsplit=1)[0].lower()
    if _SYSTEMIC_ROUTE.search(first):
        return False
    return bool(_GIVES_DROPS.search(first) or (_INTO_EYE_OR_EAR.search(first) and _USES_DROPS.search(first)))


def oral_by_name(names: list[str]) -> bool:
    """The drug's own name says it is taken by mouth ('amlodipine 5 MG Oral Tablet', 'metformin 500 mg tab')."""
    return any(_ORAL_FORM.search(name.lower()) for name in names)


@dataclass(frozen=True)
class DosageRoute:
    """What a dosage says about where a drug goes: its route (SNOMED CT codes and names) and its instructions."""

    route_codes: tuple[str, ...] = ()
    route_names: tuple[str, ...] = ()
    instructions: tuple[str, ...] = ()


def local_route(routes: list[DosageRoute], oral_name: bool = False) -> str | None:
    """The route or instruction that puts a drug in the eye or ear, or None. A route coded or named as one that acts
    on the whole body (oral, transdermal …), or a drug named as oral (`oral_name`), wins over any instruction."""
    for dosage in routes:
        local = next((LOCAL_ROUTE_CODES[c] for c in dosage.route_codes if c in LOCAL_ROUTE_CODES), None)
        if local:
            return local  # a coded ophthalmic or otic route
        if any(c in SYSTEMIC_ROUTE_CODES for c in dosage.route_codes) or oral_name or \
                any(_SYSTEMIC_ROUTE.search(n.lower()) for n in dosage.route_names):
            continue  # coded or named systemic ('per os' is by mouth, not 'left eye'), or a drug named as oral
        local = next((n for n in dosage.route_names if _ROUTE_NAME_WORDS.search(n.lower())), None)
        if local:
            return local
        for text in dosage.instructions:
            if _puts_drops_in_eye_or_ear(text):
                return text
    return None


def _dosage_routes(resource: Resource) -> list[DosageRoute]:
    """What the order or statement says about the route, dosage by dosage: the route's SNOMED CT codes, its displays
    and text, and the instructions (`text`, `patientInstruction`)."""
    found: list[DosageRoute] = []
    for dosage in as_list(resource.get("dosageInstruction")) + as_list(resource.get("dosage")):
        if not isinstance(dosage, dict):
            continue
        route = dosage.get("route")
        codes = tuple(c for s, c, _ in codings(route) if s == "http://snomed.info/sct")
        names = [d for _, _, d in codings(route) if d]
        if isinstance(route, dict) and isinstance(route.get("text"), str) and route["text"].strip():
            names.append(route["text"].strip())
        said = tuple(dosage[k].strip() for k in ("text", "patientInstruction")
                     if isinstance(dosage.get(k), str) and dosage[k].strip())
        if codes or names or said:
            found.append(DosageRoute(codes, tuple(names), said))
    return found


def _stated_reasons(index: ResourceIndex, resource: Resource) -> list[StatedReason]:
    """The reasons an order or statement gives: each `reasonCode`, and the code of each Condition a `reasonReference`
    names (when the record holds it, and it is not entered in error or refuted; else the reference's display)."""
    found = [StatedReason(tuple(codings(concept)), tuple(concept_texts(concept)))
             for concept in as_list(resource.get("reasonCode"))]
    for holder in as_list(resource.get("reasonReference")):
        ref = holder.get("reference") if isinstance(holder, dict) else None
        target = _contained(resource, ref) if isinstance(ref, str) and ref.startswith("#") else \
            index.by_ref.get(ref) if isinstance(ref, str) else None
        if isinstance(target, dict) and {c for _, c, _ in codings(target.get("verificationStatus"))} & \
                {"entered-in-error", "refuted"}:
            continue  # a diagnosis entered in error or ruled out is no reason (the order then gives none of it)
        if isinstance(target, dict):
            found.append(StatedReason(tuple(codings(target.get("code"))), tuple(concept_texts(target.get("code")))))
        else:
            display = holder.get("display") if isinstance(holder, dict) else None
            found.append(StatedReason((), (display,) if isinstance(display, str) and display else ()))
    return found


def _contained(resource: Resource, ref: str) -> Resource | None:
    """The resource a '#id' reference names among `contained`."""
    return next((c for c in as_list(resource.get("contained")) if isinstance(c, dict) and c.get("id") == ref[1:]),
                None)


def medication_view(index: ResourceIndex, resource: Resource) -> MedicationView:
    """Collect codes, names and ingredients of a Medication* resource, following medicationReference."""
    view = MedicationView(routes=_dosage_routes(resource), reasons=_stated_reasons(index, resource))
    concept = resource.get("medicationCodeableConcept")
    if isinstance(concept, dict):
        _add_concept(view, concept)
        return view
    ref_obj = resource.get("medicationReference")
    if not isinstance(ref_obj, dict):
        return view
    display = ref_obj.get("display")
    if isinstance(display, str) and display.strip():
        view.texts.append(display.strip())
    ref = ref_obj.get("reference")
    if not isinstance(ref, str) or not ref:
        return view
    medication = index.referenced_medication(resource)
    if medication is None:
        view.unresolved_reference = ref
        return view
    if medication.get("status") == "entered-in-error":
        view.entered_in_error = True
    form = medication.get("form")
    if isinstance(form, dict):
        view.forms.extend(d for _, _, d in codings(form) if d)
        if isinstance(form.get("text"), str) and form["text"].strip():
            view.forms.append(form["text"].strip())
    if isinstance(medication.get("code"), dict):
        _add_concept(view, medication["code"])
    for item in as_list(medication.get("ingredient")):
        if not isinstance(item, dict):
            continue
        concept = item.get("itemCodeableConcept")
        if isinstance(concept, dict):
            view.ingredient_codings.extend(codings(concept))
            if isinstance(concept.get("text"), str):
                view.texts.append(concept["text"])
    return view


def _add_concept(view: MedicationView, concept: dict[str, Any]) -> None:
    view.codings.extend(codings(concept))
    text = concept.get("text")
    if isinstance(text, str) and text.strip():
        view.texts.append(text.strip())


def _system_label(system: str) -> str:
    return {RXNORM: "RxNorm", "http://hl7.org/fhir/sid/ndc": "NDC"}.get(system, "code")


@dataclass
class DrugClass:
    id: str
    title: str
    ingredients: dict[str, Ingredient]
    brands: dict[str, str]  # folded brand name -> ingredient
    codes: dict[str, tuple[str, ...]]  # RxNorm code -> ingredients (from the code lists' displays)
    exclude_forms: tuple[str, ...]
    not_counted_reason: str | None
    source: str
    retrieved: str
    code_lists: tuple[str, ...]
    code_names: dict[str, str] = field(default_factory=dict)  # RxNorm code -> its RxNorm name, for cards
    spellings: dict[str, str] = field(default_factory=dict)  # folded brand/abbreviation -> as written
    # products of the class licensed only for something else: (their names as a pattern, why they do not count)
    not_counted_products: tuple[tuple[re.Pattern[str], str], ...] = ()
    other_uses: tuple[Any, ...] = ()  # value sets (fhir_mapping.valuesets.ValueSet) of reasons that are not the class's
    indications: tuple[Any, ...] = ()  # value sets of the class's own use: a reason naming one is never another use
    # the same in words, for a reason written without a code either set holds (`other_uses.words`, `.unless_words`)
    other_use_words: MentionRule | None = None
    indication_words: MentionRule | None = None
    limited_uses: tuple[LimitedUse, ...] = ()  # other uses that hold only for some of the class's drugs
    other_use_reason: str = "prescribed for {reason}"
    # orders for an acute course (courseOfTherapyType acute) or a single dose are not evidence of the class's chronic
    # use (an IV insulin dose for hyperkalaemia, correctional insulin on a ward is not a diagnosis of diabetes)
    chronic_only: bool = False
    _names: re.Pattern[str] = field(init=False, repr=False)
    _brands: re.Pattern[str] | None = field(init=False, repr=False)
    _forms: re.Pattern[str] | None = field(init=False, repr=False)
    _answers: dict[Any, Recognition | None] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._names = _word_pattern(self.ingredients)
        self._brands = _word_pattern(self.brands) if self.brands else None
        self._forms = _word_pattern(self.exclude_forms) if self.exclude_forms else None

    def ingredients_named(self, text: str) -> tuple[str, ...]:
        """Class ingredients named in a text, in order of appearance, without repeats."""
        folded = _fold(text)
        found = [m.group(1) for m in self._names.finditer(folded)]
        return tuple(dict.fromkeys(found))

    def brand_ingredients(self, text: str) -> tuple[str, ...]:
        """The ingredient of a brand name of the class named in a text (e.g. 'Norvasc' -> amlodipine)."""
        if self._brands is None:
            return ()
        found = [self.brands[m.group(1)] for m in self._brands.finditer(_fold(text))]
        return tuple(dict.fromkeys(found))

    def excluded_form(self, texts: list[str]) -> str | None:
        if self._forms is None:
            return None
        for text in texts:
            m = self._forms.search(_fold(text))
            if m:
                return m.group(1)
        return None

    def recognise(self, view: MedicationView) -> Recognition | None:
        """The class membership of a drug, or None when nothing in the record names a drug of this class.

        A pure function of what the view holds, so answers are remembered per class: records name the same few
        hundred products again and again, and each answer costs a dozen regular-expression scans."""
        key = (tuple(view.codings), tuple(view.texts), tuple(view.ingredient_codings), tuple(view.forms),
               tuple(view.routes), tuple(view.reasons))
        return remembered(self._answers, key, lambda: self._recognise(view), RECOGNITION_MEMO_SIZE)

    def _recognise(self, view: MedicationView) -> Recognition | None:
        rec = self._member(view)
        if rec is None or not rec.counted:
            return rec
        names = [d for _, _, d in view.codings if d] + view.texts + self._rxnorm_names(view)
        for pattern, why in self.not_counted_products:
            if any(pattern.search(_fold(text)) for text in names):
                return Recognition(rec.ingredients, rec.drug, rec.how, False, why)
        other = self._other_use(view, rec.ingredients)
        if other is not None:
            return Recognition(rec.ingredients, rec.drug, rec.how, False, self.other_use_reason.format(reason=other))
        return rec

    def _other_use(self, view: MedicationView, ingredients: tuple[str, ...] = ()) -> str | None:
        """The first stated reason, when every reason the order gives is one of the class's other uses (or one of
        its limited uses that holds for this drug): by a code of its sets, or in words when no code of the reason is
        in them. A reason that names the class's own use, in a code or in words, or that names none, counts it."""
        limited = [use for use in self.limited_uses if use.holds_for(ingredients)]
        if not view.reasons or not (self.other_uses or self.other_use_words or limited):
            return None
        first: str | None = None
        for reason in view.reasons:
            if any(vs.lookup(s, c) for s, c, _ in reason.codings for vs in self.indications) or (
                    self.indication_words is not None and self.indication_words.first_naming(reason.texts)):
                return None  # a reason the class is for, in any of its codings or words
            hit = next(((s, c, d) for s, c, d in reason.codings if any(vs.lookup(s, c) for vs in self.other_uses)
                        or any(use.coded(s, c) for use in limited)), None)
            if hit is not None:
                first = first or hit[2] or f"{hit[0].rsplit('/', 1)[-1]} {hit[1]}"
                continue
            rules = [r for r in [self.other_use_words, *(use.words for use in limited)] if r is not None]
            said = next(((rule, text) for rule in rules if (text := rule.first_naming(reason.texts))), None)
            if said is None:
                return None  # a reason it cannot read: the drug counts
            first = first or said[0].excerpt(said[1], 60)
        return first

    def _rxnorm_names(self, view: MedicationView) -> list[str]:
        """The RxNorm names of the drug's RxNorm codes that the class's code lists hold (a code sent without a display
        still says 'Oral Tablet' or '[Intuniv]')."""
        return [self.code_names[c] for s, c, _ in view.codings if s == RXNORM and c in self.code_names]

    def _member(self, view: MedicationView) -> Recognition | None:
        drug = view.name
        texts = [d for _, _, d in view.codings if d] + view.texts + [d for _, _, d in view.ingredient_codings if d]
        written = texts + view.forms
        if self.excluded_form(written) or local_route(view.routes, oral_by_name(written + self._rxnorm_names(view))):
            return None
        for system, code, display in view.codings + view.ingredient_codings:
            if system == RXNORM and code in self.codes:
                if not display and not view.texts and drug == view.name and code in self.code_names:
                    drug = self.code_names[code]
                return self._result(self.codes[code], drug, f"RxNorm code {code}")
        for text in texts:
            found = self.ingredients_named(text)
            if found:
                how = "ingredient on the Medication" if text in [d for _, _, d in view.ingredient_codings] \
                    else "ingredient name"
                return self._result(found, drug, how)
        if self._brands is not None:
            for text in texts:
                m = self._brands.search(_fold(text))
                if m:
                    spelled = self.spellings.get(m.group(1), m.group(1))
                    return self._result((self.brands[m.group(1)],), drug, f"the name {spelled}")
        return None

    def _result(self, ingredients: tuple[str, ...], drug: str, how: str) -> Recognition:
        counted = any(self.ingredients[i].counted for i in ingredients if i in self.ingredients)
        return Recognition(ingredients, drug, how, counted, None if counted else self.not_counted_reason)


def _fold(text: str) -> str:
    return " " + re.sub(r"[^a-z0-9]+", " ", text.lower()) + " "


def _word_pattern(words: Any) -> re.Pattern[str]:
    folded = sorted({_fold(w).strip() for w in words}, key=len, reverse=True)
    return re.compile(r"(?<![a-z0-9])(" + "|".join(re.escape(w) for w in folded) + r")(?![a-z0-9])")


def _rule(words: Any, unless: Any) -> MentionRule | None:
    """A word rule of `other_uses` (fhir_mapping/mentions.py), or None when the class lists no words."""
    if not words:
        return None
    return MentionRule([str(w) for w in words], [str(w) for w in unless or ()])


def _limited_use(item: Any, ingredients: dict[str, Ingredient], origin: str) -> LimitedUse:
    """One `other_uses.limited` entry: the drugs it holds for (its `groups` and `ingredients`), its codes and words."""
    groups = {str(g) for g in item.get("groups", ())}
    named = {_fold(str(n)).strip() for n in item.get("ingredients", ())}
    unknown = sorted(named - set(ingredients)) + sorted(groups - {i.group for i in ingredients.values()})
    if unknown:
        raise DrugClassError(f"{origin}: other_uses.limited '{item.get('use')}' names '{unknown[0]}', which is no "
                             "ingredient or group of the class")
    held = frozenset(name for name, ing in ingredients.items() if ing.group in groups) | named
    codes = [{"system": system, "code": code}
             for system, _, code in (str(c).partition("|") for c in item.get("codes", ()))]
    if any(not c["system"] or not c["code"] for c in codes):
        raise DrugClassError(f"{origin}: other_uses.limited '{item.get('use')}': codes are written 'system|code'")
    # ICD-10 categories match by prefix (I48 holds I48.91), other codes exactly, as value set files do
    sets = tuple(parse_valueset({"id": f"limited:{item['use']}", "match": match, "codes": chosen}, origin)
                 for match, chosen in (("prefix", [c for c in codes if c["system"] in ICD10_SYSTEMS]),
                                       ("exact", [c for c in codes if c["system"] not in ICD10_SYSTEMS])) if chosen)
    return LimitedUse(str(item["use"]), held, sets, _rule(item.get("words"), item.get("words_unless")))


def parse_drug_class(doc: Any, origin: str, code_lists: dict[str, list[dict[str, Any]]],
                     valuesets: dict[str, Any] | None = None) -> DrugClass:
    """Build a class from its YAML document, the code lists it names (value-set `codes` arrays) and the value sets of
    its other uses (`other_uses.valuesets`)."""
    if not isinstance(doc, dict):
        raise DrugClassError(f"{origin}: not a drug class document")
    try:
        ingredients: dict[str, Ingredient] = {}
        brands: dict[str, str] = {}
        spellings: dict[str, str] = {}

        def add(items: Any, counted: bool) -> None:
            for i, item in enumerate(items or ()):
                name = _fold(str(item["name"])).strip()
                ingredients[name] = Ingredient(name, str(item["atc"]), str(item.get("group", "")), counted)
                for brand in [*item.get("brands", ()), *item.get("abbreviations", ())]:
                    brands[_fold(str(brand)).strip()] = name
                    spellings[_fold(str(brand)).strip()] = str(brand)

        add(doc["ingredients"], True)
        not_counted = doc.get("not_counted") or {}
        add(not_counted.get("ingredients"), False)
        products = tuple((_word_pattern([str(n) for n in item["names"]]), str(item["reason"]))
                         for item in doc.get("not_counted_products") or ())
        other_uses = doc.get("other_uses") or {}
        wanted = [str(n) for n in other_uses.get("valuesets", ())]
        indications = [str(n) for n in other_uses.get("unless", ())]
        missing = [n for n in wanted + indications if n not in (valuesets or {})]
        if missing:
            raise DrugClassError(f"{origin}: other_uses value set '{missing[0]}' not found")
        cls = DrugClass(
            id=str(doc["id"]), title=str(doc.get("title", doc["id"])), ingredients=ingredients, brands=brands,
            codes={}, exclude_forms=tuple(str(f) for f in doc.get("exclude_forms", ())),
            not_counted_reason=not_counted.get("reason"), source=str(doc.get("source", "")),
            retrieved=str(doc.get("retrieved", "")), code_lists=tuple(doc.get("code_lists", ())),
            spellings=spellings, not_counted_products=products,
            other_uses=tuple((valuesets or {})[n] for n in wanted),
            indications=tuple((valuesets or {})[n] for n in indications),
            other_use_reason=str(other_uses.get("reason", "prescribed for {reason}")),
            other_use_words=_rule(other_uses.get("words"), other_uses.get("words_unless")),
            indication_words=_rule(other_uses.get("unless_words"), other_uses.get("unless_words_unless")),
            limited_uses=tuple(_limited_use(item, ingredients, origin) for item in other_uses.get("limited") or ()),
            chronic_only=bool(doc.get("chronic_only", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DrugClassError(f"{origin}: missing or malformed field {exc}") from exc
    for list_name in cls.code_lists:
        if list_name not in code_lists:
            raise DrugClassError(f"{origin}: code list '{list_name}' not found")
        for entry in code_lists[list_name]:
            if entry.get("system") != RXNORM or not entry.get("code"):
                continue
            text = " ".join(str(entry.get(k) or "") for k in ("display", "ingredient"))
            if cls.excluded_form([text]):
                continue
            found = cls.ingredients_named(text) or cls.brand_ingredients(text)
            if found:  # a listed code whose name names no class ingredient or brand is not taken on trust
                cls.codes[str(entry["code"])] = found
                if entry.get("display"):
                    cls.code_names.setdefault(str(entry["code"]), str(entry["display"]))
    return cls


class DrugClassLibrary:
    """Loads drug classes by id from model folders (first) and the shipped drugclasses/ folder."""

    def __init__(self, extra_dirs: list[Path] | None = None, code_list_loader: Any = None,
                 valueset_loader: Any = None) -> None:
        self._dirs = list(extra_dirs or [])
        self._code_lists = code_list_loader
        self._valuesets = valueset_loader
        self._cache: dict[str, DrugClass] = {}

    def get(self, name: str) -> DrugClass:
        if name in self._cache:
            return self._cache[name]
        text: str | None = None
        origin = f"drugclasses/{name}.yaml"
        for folder in self._dirs:
            path = folder / f"{name}.yaml"
            if path.is_file():
                text, origin = path.read_text(encoding="utf-8"), str(path)
                break
        if text is None:
            shipped = resources.files("fhir_mapping") / "drugclasses" / f"{name}.yaml"
            if not shipped.is_file():
                raise DrugClassError(f"drug class '{name}' not found (looked in {[str(d) for d in self._dirs]} "
                                     "and the shipped classes)")
            text = shipped.read_text(encoding="utf-8")
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DrugClassError(f"{origin}: not YAML: {exc}") from exc
        names = doc.get("code_lists", ()) if isinstance(doc, dict) else ()
        lists = {n: self._code_lists(n) for n in names} if self._code_lists else {}
        declared = (doc.get("other_uses") or {}) if isinstance(doc, dict) else {}
        uses = [*declared.get("valuesets", ()), *declared.get("unless", ())]
        sets = {n: self._valuesets(n) for n in uses} if self._valuesets else {}
        cls = parse_drug_class(doc, origin, lists, sets)
        self._cache[name] = cls
        return cls


@lru_cache(maxsize=1)
def shipped_class_ids() -> tuple[str, ...]:
    folder = resources.files("fhir_mapping") / "drugclasses"
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")))


ACUTE_COURSE = "an acute course or a single dose, not ongoing treatment"


def acute_order(res: dict[str, Any]) -> bool:
    """A MedicationRequest for an acute course (courseOfTherapyType `acute`) or whose every dosage is one dose
    (timing.repeat.count 1): treatment of an episode, not of a chronic condition."""
    if res.get("resourceType") != "MedicationRequest":
        return False
    course = res.get("courseOfTherapyType")
    codes = [c.get("code") for c in course.get("coding", ()) if isinstance(c, dict)] \
        if isinstance(course, dict) and isinstance(course.get("coding"), list) else []
    if "acute" in codes:
        return True
    dosages = res.get("dosageInstruction")
    if not isinstance(dosages, list) or not dosages:
        return False

    def once(d: Any) -> bool:
        timing = d.get("timing") if isinstance(d, dict) else None
        repeat = timing.get("repeat") if isinstance(timing, dict) else None
        return isinstance(repeat, dict) and repeat.get("count") == 1
    return all(once(d) for d in dosages)
