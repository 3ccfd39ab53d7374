#!/usr/bin/env python3
"""bench/fhir-search/gen.py — a Synthea-shaped population as NDJSON (no download).

    gen.py COUNT > resources.ndjson

COUNT resources in all: one Patient in 25, the rest Observations (vital signs and labs
with LOINC codes, UCUM quantities, effective dates over ten years) and Encounters
(one in five of the rest), each referring to its Patient. Deterministic (seeded), so
runs compare.
"""
import json
import random
import sys

FAMILIES = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
            "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore",
            "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez",
            "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen"]
GIVEN = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
         "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen"]
# LOINC code, display, unit, low, high
CODES = [("8867-4", "Heart rate", "/min", 50, 120), ("8480-6", "Systolic blood pressure", "mm[Hg]", 95, 170),
         ("8462-4", "Diastolic blood pressure", "mm[Hg]", 55, 105), ("29463-7", "Body weight", "kg", 40, 130),
         ("8302-2", "Body height", "cm", 140, 200), ("39156-5", "BMI", "kg/m2", 17, 40),
         ("8310-5", "Body temperature", "Cel", 35.5, 39.5), ("2339-0", "Glucose", "mg/dL", 60, 250),
         ("2093-3", "Cholesterol", "mg/dL", 120, 300), ("4548-4", "Hemoglobin A1c", "%", 4, 12),
         ("2160-0", "Creatinine", "mg/dL", 0.5, 2.5), ("6690-2", "Leukocytes", "10*3/uL", 3, 15),
         ("718-7", "Hemoglobin", "g/dL", 9, 18), ("777-3", "Platelets", "10*3/uL", 120, 450),
         ("2951-2", "Sodium", "mmol/L", 130, 150), ("2823-3", "Potassium", "mmol/L", 3, 5.5),
         ("9279-1", "Respiratory rate", "/min", 10, 30), ("59408-5", "Oxygen saturation", "%", 85, 100),
         ("72514-3", "Pain severity", "{score}", 0, 10), ("2085-9", "HDL Cholesterol", "mg/dL", 25, 90)]


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    rnd = random.Random(6)
    npat = max(1, count // 25)
    out = sys.stdout
    for i in range(npat):
        fam = rnd.choice(FAMILIES)
        out.write(json.dumps({
            "resourceType": "Patient", "id": "p%d" % i,
            "identifier": [{"system": "urn:bench:mrn", "value": "MRN%07d" % i}],
            "name": [{"family": fam if i % 97 else "Zyx%d" % i, "given": [rnd.choice(GIVEN)]}],
            "gender": rnd.choice(["male", "female"]),
            "birthDate": "%04d-%02d-%02d" % (rnd.randint(1930, 2015), rnd.randint(1, 12), rnd.randint(1, 28))},
            separators=(",", ":")) + "\n")
    for k in range(count - npat):
        pid = "p%d" % rnd.randrange(npat)
        y, m, d = rnd.randint(2014, 2023), rnd.randint(1, 12), rnd.randint(1, 28)
        when = "%04d-%02d-%02dT%02d:%02d:00Z" % (y, m, d, rnd.randint(0, 23), rnd.randint(0, 59))
        if k % 5 == 4:
            out.write(json.dumps({
                "resourceType": "Encounter", "id": "e%d" % k, "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                          "code": rnd.choice(["AMB", "AMB", "AMB", "EMER", "IMP"])},
                "subject": {"reference": "Patient/" + pid},
                "period": {"start": when, "end": when.replace("T", "T").replace(":00Z", ":30Z")}},
                separators=(",", ":")) + "\n")
            continue
        code, disp, unit, lo, hi = CODES[rnd.randrange(len(CODES))]
        out.write(json.dumps({
            "resourceType": "Observation", "id": "o%d" % k, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs" if k % 2 else "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": disp}], "text": disp},
            "subject": {"reference": "Patient/" + pid}, "effectiveDateTime": when,
            "valueQuantity": {"value": round(rnd.uniform(lo, hi), 1), "unit": unit,
                              "system": "http://unitsofmeasure.org", "code": unit}},
            separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
