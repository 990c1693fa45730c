"""A built wheel carries every SQL file and installs the schema without the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]


def test_wheel_carries_the_sql_and_installs_the_schema(cluster, tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
                   check=True, capture_output=True)
    wheel = next(dist.glob("ledgerlock-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    repo_sql = sorted(str(p.relative_to(REPO / "sql")) for p in (REPO / "sql").rglob("*.sql"))
    in_wheel = sorted(n.removeprefix("ledgerlock/sql/") for n in names
                      if n.startswith("ledgerlock/sql/") and n.endswith(".sql"))
    assert in_wheel == repo_sql
    assert "ledgerlock/cli.py" in names

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    name = "ll_from_wheel"
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        # run from an empty directory with only the installed wheel (and the test env's dependencies)
        env = dict(os.environ, PYTHONPATH=str(target))
        code = "import ledgerlock.cli, sys; ledgerlock.cli.cli(['--dsn', sys.argv[1], 'migrate'])"
        res = subprocess.run([sys.executable, "-c", code, cluster.conninfo(name)], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        assert "applied migration 0001_foundation" in res.stdout
        assert str(target) in subprocess.run(
            [sys.executable, "-c", "import ledgerlock; print(ledgerlock.__file__)"],
            cwd=tmp_path, env=env, capture_output=True, text=True).stdout
        with psycopg.connect(cluster.conninfo(name)) as conn:
            assert conn.execute("SELECT to_regprocedure('ledgerlock.protect(regclass,name,name,text,name,text,"
                                "name[],text,text)') IS NOT NULL").fetchone()[0]
    finally:
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
