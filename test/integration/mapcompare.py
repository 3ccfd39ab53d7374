"""mapcompare.py — compares the clinical content of FHIR Bundles (standard library only).

Used by test_mappings.py for the ReportStream mapping inventory and messages, whose expected
Bundles come from another engine: ids, fullUrls and references differ by construction, and that
project writes its own extensions. So the comparison is by content, resource type by resource
type: every clinical value of an expected resource — identifiers, names, codes, values, units,
dates, statuses — must appear in some resource of the same type in ours.
"""

# Leaf keys whose values are clinical content (FHIR R4 element names).
CLINICAL = {
    # identifiers, codes, values
    "value", "code", "unit",
    # names
    "family", "given", "prefix", "suffix",
    # statuses and administrative codes
    "status", "gender", "intent",
    # dates
    "birthDate", "deceasedDateTime", "effectiveDateTime", "issued", "authoredOn", "start", "end",
    "occurrenceDateTime", "recordedDate", "onsetDateTime", "collectedDateTime", "receivedTime",
    # typed values
    "valueString", "valueInteger", "valueBoolean", "valueDateTime", "valueTime", "valueDecimal",
    "valueCode", "deceasedBoolean", "multipleBirthBoolean", "multipleBirthInteger",
    # addresses and telecom
    "line", "city", "state", "postalCode", "country", "district",
}
# Subtrees that are not clinical content: extensions (the other project's and the IG's
# structure-preserving ones), narrative, meta, references.
SKIP = {"extension", "modifierExtension", "meta", "text", "id", "reference", "fullUrl"}
# Resource types that describe the transformation, not the patient.
SKIP_TYPES = {"Provenance", "MessageHeader", "Bundle"}


def leaves(obj, out, key=None):
    """Collects (key, normalized value) for clinical leaves of a JSON tree."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in SKIP:
                continue
            leaves(v, out, k)
    elif isinstance(obj, list):
        for v in obj:
            leaves(v, out, key)
    elif key in CLINICAL:
        out.add((key, norm(obj)))
    return out


def norm(v):
    """Numbers compare by value, text case- and space-insensitively, dates to the second."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return repr(float(v))
    s = str(v).strip()
    if len(s) >= 19 and s[4:5] == "-" and s[10:11] == "T":
        # "Z" is the zone +00:00 (FHIR datatypes.html#dateTime, RFC 3339 §4.3).
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        # Fractions of a second are formatting ("…:31.000-06:00" == "…:31-06:00" shifted).
        return s[:19] + "|" + s[s.find("+", 19) if "+" in s[19:] else (s.rfind("-") if s.rfind("-") > 18 else len(s)):]
    return " ".join(s.lower().split())


def refs(obj, out):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "reference" and isinstance(v, str):
                out.add(v)
            else:
                refs(v, out)
    elif isinstance(obj, list):
        for v in obj:
            refs(v, out)
    return out


def resources(bundle):
    """Resources by type, without the transformation's own (Provenance, MessageHeader) and
    without those only they refer to (the converting organization, the message's sender)."""
    entries = [e for e in bundle.get("entry", []) or [] if isinstance(e.get("resource"), dict)]
    names = {}
    for e in entries:
        r = e["resource"]
        keys = {e.get("fullUrl", "")}
        if r.get("id"):
            keys.add("%s/%s" % (r.get("resourceType"), r["id"]))
        names[id(r)] = keys
    referenced_by_skipped, referenced_by_kept = set(), set()
    for e in entries:
        r = e["resource"]
        if r.get("resourceType") in SKIP_TYPES:
            # A Provenance's target is what the message wrote (the clinical resources), not
            # transformation metadata; its agents and entities are.
            referenced_by_skipped.update(refs({k: v for k, v in r.items() if k != "target"}, set()))
        else:
            referenced_by_kept.update(refs(r, set()))
    out = {}
    for e in entries:
        r = e["resource"]
        t = r.get("resourceType")
        if not t or t in SKIP_TYPES:
            continue
        keys = names[id(r)]
        if keys & referenced_by_skipped and not keys & referenced_by_kept:
            continue
        out.setdefault(t, []).append(r)
    return out


def compare(expected, ours):
    """Returns the list of (type, key, value) clinical values of expected missing from ours."""
    exp, got = resources(expected), resources(ours)
    missing = []
    for t, rs in sorted(exp.items()):
        have = set()
        for r in got.get(t, []):
            leaves(r, have)
        for r in rs:
            for k, v in sorted(leaves(r, set())):
                if (k, v) not in have:
                    missing.append((t, k, v))
    return missing
