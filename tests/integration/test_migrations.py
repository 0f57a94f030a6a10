"""Migrations: every service database created from scratch, the services
migrated in a random order; no foreign key points outside its own service's
tables; migrating twice changes nothing; a changed applied migration stops the
service with a message naming the file."""

import glob
import os
import random
import subprocess

import harness


def services():
    """Every service with migrations in the source tree."""
    root = os.path.join(harness.source_dir(), "migrations")
    names = [os.path.basename(d) for d in glob.glob(os.path.join(root, "*"))
             if os.path.isdir(d) and os.path.basename(d) != "runtime"]
    assert "catalog" in names, names
    return sorted(names)


def migrate(service, db, check=True):
    exe = harness.binary("services/%s/mall-%s" % (service, service))
    env = dict(os.environ)
    env["MALL_%s_DB" % service.upper()] = db.conninfo
    env["MALL_%s_DB_WAIT" % service.upper()] = "0"
    p = subprocess.run([exe, "migrate"], env=env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    if check:
        assert p.returncode == 0, "%s migrate: %s%s" % (service, p.stdout, p.stderr)
    return p


def tables(db):
    return {r[0] for r in db.sql(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname = 'public'")}


def test_every_service_from_scratch_in_random_order():
    order = services()
    random.shuffle(order)
    print("order:", order)
    dbs = {}
    for s in order:
        dbs[s] = harness.cluster().create_database(s)
        migrate(s, dbs[s])
    for s, db in dbs.items():
        recorded = [r[0] for r in db.sql("SELECT name FROM schema_migrations ORDER BY name")]
        files = sorted(os.path.basename(f) for f in glob.glob(
            os.path.join(harness.source_dir(), "migrations", s, "*.sql")))
        assert ["%s/%s" % (s, f) for f in files] == [r for r in recorded if r.startswith(s + "/")]
        assert "rpc_idempotency" in tables(db)
        # no foreign key leaves the service: every referenced table is one of
        # this database's own tables (PostgreSQL cannot reference another
        # database at all; this guards against shared schemas or extensions)
        own = tables(db)
        for con, src, dst, nsp in db.sql(
                "SELECT con.conname, src.relname, dst.relname, n.nspname FROM pg_constraint con "
                "JOIN pg_class src ON src.oid = con.conrelid "
                "JOIN pg_class dst ON dst.oid = con.confrelid "
                "JOIN pg_namespace n ON n.oid = dst.relnamespace WHERE con.contype = 'f'"):
            assert nsp == "public" and dst in own, (s, con, src, dst, nsp)
        # migrating again applies nothing
        before = db.sql("SELECT name, checksum, applied_at FROM schema_migrations ORDER BY name")
        migrate(s, db)
        assert db.sql("SELECT name, checksum, applied_at FROM schema_migrations ORDER BY name") \
            == before


def test_service_role_reaches_only_its_own_database():
    a = harness.cluster().create_database("catalog")
    b = harness.cluster().create_database("catalog")
    code, rows, err = harness.cluster().sql("SELECT 1", dbname=b.name, user=a.role, check=False)
    assert code != 0 and "permission denied" in err, (code, err)


def test_changed_applied_migration_stops_the_service():
    db = harness.cluster().create_database("catalog")
    migrate("catalog", db)
    # what the service sees when 0001_catalog.sql was edited after it was applied
    db.sql("UPDATE schema_migrations SET checksum = repeat('0', 64) "
           "WHERE name = 'catalog/0001_catalog.sql'")
    p = migrate("catalog", db, check=False)
    assert p.returncode != 0, p
    out = p.stdout + p.stderr
    assert "catalog/0001_catalog.sql" in out and "changed" in out, out
    # the serving binary refuses to start the same way
    exe = harness.binary("services/catalog/mall-catalog")
    proc = harness.start_process("catalog-changed", [exe], {
        "MALL_CATALOG_DB": db.conninfo, "MALL_CATALOG_DB_WAIT": "0",
        "MALL_CATALOG_LISTEN": "tcp://127.0.0.1:%d" % harness.free_port(),
        "MALL_CATALOG_OPS_LISTEN": "127.0.0.1:%d" % harness.free_port()})
    code = proc.wait(timeout=30)
    assert code not in (0, None), code
    assert "catalog/0001_catalog.sql" in proc.output(), proc.output()


def test_bad_settings_exit_2_with_every_error():
    exe = harness.binary("services/catalog/mall-catalog")
    proc = harness.start_process("catalog-bad-settings", [exe], {
        "MALL_CATALOG_WORKERS": "many", "MALL_CATALOG_OPS_LISTEN": "nowhere"},
        inherit_env=False)
    assert proc.wait(timeout=30) == 2
    out = proc.output()
    for text in ("MALL_CATALOG_DB: is required", "MALL_CATALOG_WORKERS", "MALL_CATALOG_OPS_LISTEN"):
        assert text in out, (text, out)


harness.run()
