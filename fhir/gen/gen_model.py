#!/usr/bin/env python3
"""gen_model.py — turns the official FHIR R4 (4.0.1) definitions into fhir/model_gen.c.

Usage: gen_model.py DEFINITIONS_DIR OUTPUT.c

Inputs (all in DEFINITIONS_DIR, the official definitions as data):
  profiles-types.json       StructureDefinitions of the data types (primitive and complex)
  profiles-resources.json   StructureDefinitions of the resources
  Bundle-searchParams.json  the official R4 SearchParameters (1375)
  valuesets.json            R4 ValueSets and CodeSystems (to inline required bindings)
  v3-codesystems.json       HL7 v3 CodeSystems and ValueSets (some required bindings use them)

Output: compact C tables (one string pool with offsets, integer row arrays) that
fhir/model.c indexes at run time. The layout of every row is fhir/fhir_int.h.
Python 3 standard library only; the output is deterministic.
"""
import json
import os
import sys

MAX_INLINE_CODES = 600
SYSTEM_TYPES = ["Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity"]
KIND = {"system": 0, "primitive-type": 1, "complex-type": 2, "resource": 3, "logical": 4}
SEARCH_TYPES = ["number", "date", "string", "token", "reference", "composite", "quantity",
                "uri", "special"]
STRENGTH = {"required": 1, "extensible": 2, "preferred": 3, "example": 4}

# Element flags (fhir_int.h HV__EF_*).
EF_CHOICE = 1
EF_MODIFIER = 2
EF_SUMMARY = 4
EF_XMLATTR = 8
EF_XHTML = 16
EF_ARRAY = 32
EF_BACKBONE = 64
EF_ROOT = 128


def load(defs, name):
    with open(os.path.join(defs, name), encoding="utf-8") as f:
        return json.load(f)


class Pool:
    """A string pool: every distinct string once, NUL-terminated; offset 0 is ""."""

    def __init__(self):
        self.parts = [""]
        self.index = {"": 0}
        self.size = 1

    def add(self, s):
        if s is None:
            return 0
        if s in self.index:
            return self.index[s]
        off = self.size
        self.index[s] = off
        self.parts.append(s)
        self.size += len(s.encode("utf-8")) + 1
        return off


def c_string_chunks(parts):
    """Emits the pool as a sequence of C string literals, one per string."""
    out = []
    for s in parts:
        b = s.encode("utf-8") + b"\0"
        lit = []
        for ch in b[:-1]:
            if ch == 0x22:
                lit.append('\\"')
            elif ch == 0x5C:
                lit.append("\\\\")
            elif 0x20 <= ch < 0x7F and ch != 0x3F:
                lit.append(chr(ch))
            else:
                lit.append("\\%03o" % ch)
        out.append('"' + "".join(lit) + '\\0"')
    return out


def posix_regex(rx):
    """Translates a FHIR (XML Schema style) regex into a POSIX ERE anchored on both ends."""
    if rx == "[ \\r\\n\\t\\S]+":
        return ""  # any non-empty text: checked in C (non-empty, no control characters but tab/CR/LF)
    r = rx.replace("[^\\s]", "[^[:space:]]").replace("\\S", "[^[:space:]]")
    r = r.replace("\\s", "[[:space:]]").replace("\\d", "[0-9]")
    r = r.replace("\\.", "[.]").replace("\\+", "[+]").replace("\\-", "-")
    # In bracket expressions, '[+]' and '-' must be rewritten inside brackets.
    r = r.replace("[0-9a-zA-Z[+]/=]", "[0-9a-zA-Z+/=]").replace("[A-Za-z0-9-[.]]", "[A-Za-z0-9.-]")
    r = r.replace("([+]|-)", "([+]|-)")
    return "^(" + r + ")$"


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: gen_model.py DEFINITIONS_DIR OUTPUT.c\n")
        return 2
    defs, outpath = sys.argv[1], sys.argv[2]
    pool = Pool()

    sds = []
    for fname in ("profiles-types.json", "profiles-resources.json"):
        for e in load(defs, fname)["entry"]:
            r = e["resource"]
            if r["resourceType"] == "StructureDefinition" and r.get("kind") != "logical":
                sds.append(r)

    # --- types ------------------------------------------------------------
    types = []  # dicts
    tindex = {}
    for s in SYSTEM_TYPES:
        tindex["System." + s] = len(types)
        types.append({"name": "System." + s, "url": "http://hl7.org/fhirpath/System." + s,
                      "kind": 0, "abstract": 0, "base": None, "sd": None})
    for sd in sds:
        tindex[sd["id"]] = len(types)
        types.append({"name": sd["id"], "url": sd["url"], "kind": KIND[sd["kind"]],
                      "abstract": 1 if sd.get("abstract") else 0,
                      "base": sd.get("baseDefinition"), "sd": sd,
                      "constraint": 1 if sd.get("derivation") == "constraint" else 0})
    url2type = {t["url"]: i for i, t in enumerate(types)}

    def type_of_code(code):
        if code.startswith("http://hl7.org/fhirpath/System."):
            return tindex[code[len("http://hl7.org/fhirpath/"):]]
        return tindex[code]

    def type_of_url(u):
        if u in url2type:
            return url2type[u]
        return None

    # --- elements ---------------------------------------------------------
    elems = []
    typerefs = []       # (type id, targets first, targets n)
    targets = []        # type ids
    children = []       # elem ids, grouped per owner
    constraints = []    # (key, severity, human, expression, source)
    cindex = {}
    cidx = []           # constraint ids, grouped per element
    bindings = []       # (strength, url, inlined, codes first, codes n)
    bindex = {}
    codes = []          # (system, code)
    vs_codes_cache = {}

    # Terminology: ValueSets and CodeSystems for inlining required bindings.
    valuesets, codesystems = {}, {}
    for fname in ("valuesets.json", "v3-codesystems.json"):
        for e in load(defs, fname)["entry"]:
            r = e["resource"]
            if r["resourceType"] == "ValueSet":
                valuesets.setdefault(r["url"], r)
            elif r["resourceType"] == "CodeSystem":
                codesystems.setdefault(r["url"], r)

    def cs_codes(url):
        cs = codesystems.get(url)
        if cs is None or cs.get("content") not in ("complete", None):
            return None
        out = []

        def walk(cl):
            for c in cl:
                out.append(c["code"])
                walk(c.get("concept", []))
        walk(cs.get("concept", []))
        return out

    def expand(url, depth=0):
        url = url.split("|")[0]
        if url in vs_codes_cache:
            return vs_codes_cache[url]
        vs = valuesets.get(url)
        result = None
        if vs is not None and depth < 8:
            acc = []
            ok = True
            compose = vs.get("compose", {})
            for inc in compose.get("include", []):
                if "filter" in inc:
                    ok = False
                    break
                for sub in inc.get("valueSet", []):
                    r = expand(sub, depth + 1)
                    if r is None:
                        ok = False
                        break
                    acc.extend(r)
                if not ok:
                    break
                system = inc.get("system")
                if system is None:
                    continue
                if "concept" in inc:
                    acc.extend((system, c["code"]) for c in inc["concept"])
                else:
                    cl = cs_codes(system)
                    if cl is None:
                        ok = False
                        break
                    acc.extend((system, c) for c in cl)
            if ok and compose.get("exclude"):
                ex = set()
                for inc in compose["exclude"]:
                    if "concept" not in inc:
                        ok = False
                        break
                    ex.update((inc.get("system"), c["code"]) for c in inc["concept"])
                acc = [x for x in acc if x not in ex]
            if ok and 0 < len(acc) <= MAX_INLINE_CODES:
                seen, result = set(), []
                for x in acc:
                    if x not in seen:
                        seen.add(x)
                        result.append(x)
        vs_codes_cache[url] = result
        return result

    def binding_id(b):
        strength = STRENGTH[b["strength"]]
        url = b.get("valueSet")
        if url is None:
            return -1
        key = (strength, url)
        if key in bindex:
            return bindex[key]
        first, n, inl = len(codes), 0, 0
        if strength == 1:
            cl = expand(url)
            if cl is not None:
                inl = 1
                for system, code in cl:
                    codes.append((pool.add(system), pool.add(code)))
                n = len(cl)
        bindex[key] = len(bindings)
        bindings.append((strength, pool.add(url.split("|")[0]), inl, first, n))
        return bindex[key]

    def constraint_id(c):
        key = (c["key"], c.get("severity"), c.get("human"), c.get("expression", ""),
               c.get("source", ""))
        if key in cindex:
            return cindex[key]
        cindex[key] = len(constraints)
        constraints.append(key)
        return cindex[key]

    pending_cref = []  # (elem id, referenced path, sd id)
    for ti, t in enumerate(types):
        sd = t["sd"]
        t["root"] = -1
        t["regex"] = None
        t["maxlen"] = 0
        t["systype"] = -1
        if sd is None:
            continue
        path2id = {}
        for el in sd["snapshot"]["element"]:
            if el.get("sliceName") or ":" in el["id"]:
                continue
            path = el["path"]
            eid = len(elems)
            path2id[path] = eid
            parent = path2id.get(path.rsplit(".", 1)[0]) if "." in path else -1
            name = path.rsplit(".", 1)[-1]
            flags = 0
            if name.endswith("[x]"):
                flags |= EF_CHOICE
            if el.get("isModifier"):
                flags |= EF_MODIFIER
            if el.get("isSummary"):
                flags |= EF_SUMMARY
            reps = el.get("representation", [])
            if "xmlAttr" in reps:
                flags |= EF_XMLATTR
            if "xhtml" in reps or any(ty.get("code") == "xhtml" for ty in el.get("type", [])):
                flags |= EF_XHTML
            basemax = el.get("base", {}).get("max", el.get("max", "1"))
            if parent != -1 and basemax != "1" and basemax != "0":
                flags |= EF_ARRAY
            if parent == -1:
                flags |= EF_ROOT
                t["root"] = eid
            mx = el.get("max", "*")
            tfirst = len(typerefs)
            for ty in el.get("type", []):
                tid = type_of_code(ty["code"])
                # Element.id, Resource.id, Extension.url... are typed System.String with the
                # FHIR type in an extension; use the FHIR type (id, string, uri) except for
                # the primitive `value` itself, whose type is the System type.
                if ty["code"].startswith("http://hl7.org/fhirpath/") and not (
                        sd["kind"] == "primitive-type" and name == "value"):
                    for x in ty.get("extension", []):
                        if x["url"].endswith("/structuredefinition-fhir-type"):
                            tid = tindex[x["valueUrl"]]
                    # The 4.0.1 snapshots say "string" for Resource.id; resource.html
                    # defines it as `id` (1..64 characters of [A-Za-z0-9.-]).
                    if sd["kind"] == "resource" and path.count(".") == 1 and name == "id":
                        tid = tindex["id"]
                tgfirst = len(targets)
                for tp in ty.get("targetProfile", []):
                    x = type_of_url(tp)
                    if x is not None:
                        targets.append(x)
                typerefs.append((tid, tgfirst, len(targets) - tgfirst))
                if parent != -1 and ty["code"] in ("BackboneElement", "Element") and \
                        not name.endswith("[x]"):
                    flags |= EF_BACKBONE
                if ti is not None and sd["kind"] == "primitive-type" and name == "value":
                    for x in ty.get("extension", []):
                        if x["url"].endswith("/regex"):
                            t["regex"] = x["valueString"]
                    t["systype"] = tid
                    # R4 4.0.1 erratum: positiveInt.value and unsignedInt.value are typed
                    # System.String in the definitions; FHIRPath treats them as Integer.
                    if sd["id"] in ("positiveInt", "unsignedInt"):
                        t["systype"] = tindex["System.Integer"]
                    t["maxlen"] = el.get("maxLength", 0)
            cfirst = len(cidx)
            for c in el.get("constraint", []):
                cidx.append(constraint_id(c))
            binding = binding_id(el["binding"]) if "binding" in el else -1
            e = {"id": eid, "path": path, "name": name, "parent": parent, "type": ti,
                 "min": el.get("min", 0), "max": 0xFFFFFFFF if mx == "*" else int(mx),
                 "flags": flags, "tfirst": tfirst, "tn": len(typerefs) - tfirst,
                 "cfirst": cfirst, "cn": len(cidx) - cfirst, "binding": binding,
                 "cref": -1, "kids": []}
            elems.append(e)
            if parent != -1:
                elems[parent]["kids"].append(eid)
            if "contentReference" in el:
                pending_cref.append((eid, el["contentReference"].lstrip("#"), path2id))
        t["path2id"] = path2id
    for eid, ref, path2id in pending_cref:
        elems[eid]["cref"] = path2id[ref]
        elems[eid]["flags"] &= ~EF_BACKBONE
    for e in elems:
        if e["kids"] and not (e["flags"] & EF_ROOT):
            e["flags"] |= EF_BACKBONE
        e["kfirst"] = len(children)
        children.extend(e["kids"])

    # Base types.
    for t in types:
        b = t["base"]
        t["baseid"] = url2type[b] if b else -1

    # --- search parameters -----------------------------------------------
    sps = []
    url2sp = {}
    for e in load(defs, "Bundle-searchParams.json")["entry"]:
        r = e["resource"]
        if r["resourceType"] != "SearchParameter":
            continue
        url2sp[r["url"]] = len(sps)
        sps.append(r)
    sprows = []
    comps = []  # (param id, expression)
    by_type = []  # (type id, code, param id)
    pending_comps = []
    for i, r in enumerate(sps):
        bfirst = len(targets)
        for b in r.get("base", []):
            if b in tindex:
                targets.append(tindex[b])
                by_type.append((tindex[b], r["code"], i))
        tgfirst = len(targets)
        for tg in r.get("target", []):
            if tg in tindex:
                targets.append(tindex[tg])
        cfirst = len(comps)
        for c in r.get("component", []):
            comps.append([c["definition"], c.get("expression", "")])
        pending_comps.append((cfirst, len(comps)))
        sprows.append((pool.add(r["code"]), pool.add(r["url"]), SEARCH_TYPES.index(r["type"]),
                       pool.add(r.get("expression")), bfirst, len(targets) - bfirst,
                       tgfirst, len(targets) - tgfirst, cfirst, len(comps) - cfirst,
                       pool.add(r.get("xpathUsage", "normal"))))
    comprows = []
    for c in comps:
        comprows.append((url2sp.get(c[0], -1), pool.add(c[1])))
    by_type.sort(key=lambda x: (x[0], x[1]))
    for t in types:
        t["sfirst"], t["sn"] = 0, 0
    for j, (tid, code, i) in enumerate(by_type):
        if types[tid]["sn"] == 0:
            types[tid]["sfirst"] = j
        types[tid]["sn"] += 1

    # --- emit -------------------------------------------------------------
    # All strings enter the pool before it is written.
    trows = []
    for t in types:
        rx = t.get("regex")
        trows.append((pool.add(t["name"]), pool.add(t["url"]), t["kind"], t["abstract"],
                      t.get("constraint", 0), t["baseid"], t["root"], t["systype"],
                      pool.add(rx), pool.add(posix_regex(rx)) if rx else 0, t["maxlen"],
                      t["sfirst"], t["sn"]))
    erows = []
    for e in elems:
        sib = elems[e["parent"]]["kids"].index(e["id"]) if e["parent"] != -1 else 0
        erows.append((pool.add(e["path"]), pool.add(e["name"]), e["parent"], e["type"],
                      e["min"], e["max"], e["flags"], e["tfirst"], e["tn"], e["kfirst"],
                      len(e["kids"]), e["cfirst"], e["cn"], e["binding"], e["cref"], sib))
    # Child keys: (owner element, JSON property name, element, chosen type), with the
    # choice elements expanded to one key per allowed type (value[x] → valueQuantity...).
    ckeys = []
    for oid, o in enumerate(elems):
        for k in o["kids"]:
            e = elems[k]
            if e["flags"] & EF_CHOICE:
                base = e["name"][:-3]
                for j in range(e["tn"]):
                    tid = typerefs[e["tfirst"] + j][0]
                    tn = types[tid]["name"]
                    ckeys.append((oid, pool.add(base + tn[0].upper() + tn[1:]), k, tid))
            else:
                if e["tn"] > 0:
                    tid = typerefs[e["tfirst"]][0]
                else:
                    r = elems[e["cref"]]
                    tid = typerefs[r["tfirst"]][0]
                ckeys.append((oid, pool.add(e["name"]), k, tid))
    crows = []
    sev = {"error": 0, "warning": 1}
    for key, severity, human, expr, source in constraints:
        crows.append((pool.add(key), sev.get(severity, 0), pool.add(human), pool.add(expr),
                      pool.add(source)))

    out = []
    w = out.append
    w("/*\n * model_gen.c — generated from the official FHIR R4 (4.0.1) definitions\n"
      " * (profiles-types.json, profiles-resources.json, Bundle-searchParams.json,\n"
      " * valuesets.json, v3-codesystems.json) by fhir/gen/gen_model.py — do not edit.\n"
      " * Regenerate with `make regen-fhir-model`. Row layouts: fhir/fhir_int.h.\n */\n")
    w('#include "fhir/fhir_int.h"\n\n')
    w("const char hv__fhir_pool[] =\n")
    for chunk in c_string_chunks(pool.parts):
        w("    " + chunk + "\n")
    w(";\n\n")

    def table(ctype, name, rows):
        w("const %s %s[] = {\n" % (ctype, name))
        for r in rows:
            w("{" + ",".join(str(x) for x in r) + "},\n")
        if not rows:
            w("{0},\n")
        w("};\n")
        w("const uint32_t %s_count = %d;\n\n" % (name, len(rows)))

    def array(ctype, name, vals):
        w("const %s %s[] = {" % (ctype, name))
        for i, v in enumerate(vals):
            if i % 20 == 0:
                w("\n")
            w(str(v) + ",")
        if not vals:
            w("0")
        w("\n};\nconst uint32_t %s_count = %d;\n\n" % (name, len(vals)))

    table("hv__fhir_type_row_t", "hv__fhir_types", trows)
    table("hv__fhir_elem_row_t", "hv__fhir_elems", erows)
    table("hv__fhir_typeref_row_t", "hv__fhir_typerefs", typerefs)
    array("uint16_t", "hv__fhir_targets", targets)
    array("int32_t", "hv__fhir_children", children)
    table("hv__fhir_constraint_row_t", "hv__fhir_constraints", crows)
    array("uint16_t", "hv__fhir_cidx", cidx)
    table("hv__fhir_binding_row_t", "hv__fhir_bindings", bindings)
    table("hv__fhir_code_row_t", "hv__fhir_codes", codes)
    table("hv__fhir_search_row_t", "hv__fhir_search", sprows)
    table("hv__fhir_comp_row_t", "hv__fhir_comps", comprows)
    table("hv__fhir_search_idx_row_t", "hv__fhir_search_idx",
          [(tid, i) for tid, code, i in by_type])
    table("hv__fhir_childkey_row_t", "hv__fhir_childkeys", ckeys)
    w("const uint32_t hv__fhir_pool_size = %d;\n" % pool.size)

    def slots(n):
        s = 1
        while s < 2 * n:
            s <<= 1
        return s
    # Hash slots, filled once at run time by fhir/model.c (zero-initialized storage).
    for name, n in (("types", 2 * len(types)), ("urls", len(types) + len(sps)),
                    ("paths", len(elems)), ("childkeys", len(ckeys))):
        w("uint32_t hv__fhir_h_%s[%d];\nconst uint32_t hv__fhir_h_%s_mask = %d;\n" %
          (name, slots(n), name, slots(n) - 1))
    with open(outpath, "w", encoding="utf-8") as f:
        f.write("".join(out))
    sys.stderr.write("gen_model: %d types, %d elements, %d constraints, %d bindings (%d codes), "
                     "%d search parameters, pool %d bytes\n" %
                     (len(types), len(elems), len(constraints), len(bindings), len(codes),
                      len(sps), pool.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
