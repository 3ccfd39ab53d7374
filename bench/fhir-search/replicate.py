#!/usr/bin/env python3
"""bench/fhir-search/replicate.py — multiplies a population imported by the engine, in SQL.

    replicate.py FHIR_DB COPIES

Importing a million resources through `holovitals import` (FHIRPath over every search
parameter, the full-text rows) runs at 150-2,000 resources/s on this loaded 2-core
machine: 10 to 110 minutes. For the benchmark's large population, gen.py's output of
N resources is imported once by the engine, then this script adds COPIES - 1 copies of
every stored row — the resources and every index row the engine wrote for them, full
text included — with each id (and each reference to a Patient, and each Patient's
MRN) suffixed "x<k>", so the index is the engine's own, only repeated. Row ids of copy k
are the base's plus k × the base's largest, so each copy keeps the base's interleaving
of types. The tables' indexes are dropped during the copy and built again after. Run it
on a stopped store (no engine has it open), once.
"""
import sqlite3
import sys
import time


def main():
    db, copies = sys.argv[1], int(sys.argv[2])
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("PRAGMA synchronous=OFF")
    c.execute("PRAGMA cache_size=-1000000")
    m = c.execute("SELECT MAX(rid) FROM resources").fetchone()[0]
    if c.execute("SELECT COUNT(*) FROM resources WHERE instr(id, 'x') > 0").fetchone()[0]:
        raise SystemExit("replicate.py: %s already holds copies" % db)
    # The base's rows of each table are its first row ids (copies are appended).
    # sp_reftok: the reference x token rows of _has (fhir schema 15 on), when the store has them.
    reftok = c.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'sp_reftok'").fetchone()[0] > 0
    last = {t: c.execute("SELECT COALESCE(MAX(rowid), 0) FROM %s" % t).fetchone()[0]
            for t in ("ident", "refs", "sp_str", "sp_tok", "sp_ref", "sp_date", "sp_num", "sp_uri", "sp_tokdate", "sp_tokqty")
            + (("sp_reftok",) if reftok else ())}
    # The tables' secondary indexes are dropped while the copies go in and built again
    # after (a sorted build, not millions of inserts at random places); same definitions.
    idx = c.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN"
                    " ('resources', 'ident', 'refs', 'sp_str', 'sp_tok', 'sp_ref', 'sp_date', 'sp_num', 'sp_uri',"
                    " 'sp_tokdate', 'sp_tokqty', 'sp_reftok')"
                    ).fetchall()
    for name, _ in idx:
        c.execute("DROP INDEX %s" % name)
    for k in range(1, copies):
        t = time.time()
        sfx, off = "x%d" % k, k * m
        c.execute("BEGIN")
        c.execute(
            "INSERT INTO resources (rid, type, id, version, last_ms, deleted, json) SELECT rid + ?1, type, id || ?2,"
            " version, last_ms, deleted, CASE WHEN type = 'Patient' THEN json_set(json, '$.id', id || ?2,"
            " '$.identifier[0].value', json_extract(json, '$.identifier[0].value') || ?2)"
            " WHEN json_extract(json, '$.subject.reference') IS NOT NULL THEN json_set(json, '$.id', id || ?2,"
            " '$.subject.reference', json_extract(json, '$.subject.reference') || ?2)"
            " ELSE json_set(json, '$.id', id || ?2) END FROM resources WHERE rid <= ?3", (off, sfx, m))
        c.execute("INSERT INTO ident SELECT type, id || ?1, system, value || ?1 FROM ident WHERE rowid <= ?2", (sfx, last["ident"]))
        c.execute("INSERT INTO refs SELECT type, id || ?1, patient || ?1 FROM refs WHERE rowid <= ?2", (sfx, last["refs"]))
        # Token, string and combined rows carry the row id of their resource's current version
        # (migrations 11 and 14): the copy's is the base's plus the offset of the copy.
        c.execute("INSERT INTO sp_str (type, id, code, value, grp, rid) SELECT type, id || ?1, code, value, grp,"
                  " rid + ?3 FROM sp_str WHERE rowid <= ?2", (sfx, last["sp_str"], off))
        c.execute("INSERT INTO sp_tok (type, id, code, system, value, grp, rid) SELECT type, id || ?1, code, system,"
                  " CASE WHEN type = 'Patient' AND code = 'identifier' THEN value || ?1 ELSE value END, grp, rid + ?3"
                  " FROM sp_tok WHERE rowid <= ?2", (sfx, last["sp_tok"], off))
        c.execute("INSERT INTO sp_tokdate (type, id, rid, tcode, tsys, tval, dcode, lo, hi) SELECT type, id || ?1,"
                  " rid + ?3, tcode, tsys, tval, dcode, lo, hi FROM sp_tokdate WHERE rowid <= ?2",
                  (sfx, last["sp_tokdate"], off))
        c.execute("INSERT INTO sp_tokqty (type, id, rid, tcode, tsys, tval, qcode, value, system, unit, cvalue, cunit)"
                  " SELECT type, id || ?1, rid + ?3, tcode, tsys, tval, qcode, value, system, unit, cvalue, cunit"
                  " FROM sp_tokqty WHERE rowid <= ?2", (sfx, last["sp_tokqty"], off))
        c.execute("INSERT INTO sp_ref SELECT type, id || ?1, code, rtype, CASE WHEN rtype = 'Patient' THEN rid || ?1"
                  " ELSE rid END, grp FROM sp_ref WHERE rowid <= ?2", (sfx, last["sp_ref"]))
        if reftok:
            c.execute("INSERT INTO sp_reftok (type, id, rcode, rtype, rid, tcode, tsys, tval) SELECT type, id || ?1,"
                      " rcode, rtype, CASE WHEN rtype = 'Patient' THEN rid || ?1 ELSE rid END, tcode, tsys, tval"
                      " FROM sp_reftok WHERE rowid <= ?2", (sfx, last["sp_reftok"]))
        c.execute("INSERT INTO sp_date SELECT type, id || ?1, code, lo, hi, grp FROM sp_date WHERE rowid <= ?2", (sfx, last["sp_date"]))
        c.execute("INSERT INTO sp_num SELECT type, id || ?1, code, value, system, unit, grp, cvalue, cunit FROM sp_num"
                  " WHERE rowid <= ?2", (sfx, last["sp_num"]))
        c.execute("INSERT INTO sp_uri SELECT type, id || ?1, code, value, grp FROM sp_uri WHERE rowid <= ?2", (sfx, last["sp_uri"]))
        c.execute("INSERT INTO sp_text (rowid, type, id, narrative, content) SELECT rowid + ?1, type, id || ?2,"
                  " narrative, content FROM sp_text WHERE rowid <= ?3", (off, sfx, m))
        c.execute("COMMIT")
        print("copy %d: %.1f s" % (k, time.time() - t), file=sys.stderr, flush=True)
    t = time.time()
    for _, sql in idx:
        c.execute(sql)
    print("indexes: %.1f s" % (time.time() - t), file=sys.stderr)
    print("resources: %d" % c.execute("SELECT COUNT(*) FROM resources").fetchone()[0])


if __name__ == "__main__":
    main()
