"""Where the time of one write goes: EXPLAIN ANALYZE of a single-row statement on each configuration, the
median of a few tries per trigger. One session on a quiet table: it explains the ratios, it is not one."""

from __future__ import annotations

import re
import statistics

from psycopg import sql

from .harness import Bench
from .tables import Features, protect

TRIES = 15

# (label, table, protect kwargs or None for plain, statement template)
CASES = [
    ("INSERT draft, plain table", "bd_plain", None, "INSERT INTO {t} (company_id) VALUES (1)"),
    ("INSERT draft, enforcement", "bd_enforced", {"audit": False}, "INSERT INTO {t} (company_id) VALUES (1)"),
    ("INSERT draft dated 2019-12-30, enforcement", "bd_enforced", {"audit": False},
     "INSERT INTO {t} (company_id, issued_on) VALUES (1, '2019-12-30')"),
    ("INSERT draft, enforcement + audit", "bd_audited", {"audit": True}, "INSERT INTO {t} (company_id) VALUES (1)"),
    ("INSERT final, numbered (no audit)", "bd_numbered", {"audit": False, "numbered": True},
     "INSERT INTO {t} (company_id, status) VALUES (1, 'approved')"),
    ("UPDATE draft, plain table", "bd_plain", None, "UPDATE {t} SET amount = amount + 1 WHERE id = 1"),
    ("UPDATE draft, enforcement", "bd_enforced", {"audit": False}, "UPDATE {t} SET amount = amount + 1 WHERE id = 1"),
    ("UPDATE draft, enforcement + audit", "bd_audited", {"audit": True},
     "UPDATE {t} SET amount = amount + 1 WHERE id = 1"),
]

LINE = re.compile(r"^(Trigger [^:]+|Execution Time): (?:time=)?([0-9.]+)")


def measure(b: Bench, f: Features) -> list[dict]:
    """Per case: the median execution time and the median time of each trigger, in ms."""
    made = set()
    out = []
    for label, table, kwargs, template in CASES:
        if kwargs and kwargs.get("numbered") and not f.numbering:
            continue
        if kwargs and kwargs.get("audit") and not f.audit:
            continue
        if table not in made:
            b.create_doc_table(table, rows=100)
            if kwargs is not None:
                protect(b, table, **kwargs)
            made.add(table)
        stmt = sql.SQL(template.format(t="{}")).format(sql.Identifier(table))
        timings: dict[str, list[float]] = {}
        with b.connect() as conn:
            for _ in range(TRIES):
                conn.execute("BEGIN")
                rows = conn.execute(sql.SQL("EXPLAIN (ANALYZE, TIMING) ") + stmt).fetchall()
                conn.execute("ROLLBACK")
                for (text,) in rows:
                    m = LINE.match(text)
                    if m:
                        timings.setdefault(m.group(1).removeprefix("Trigger "), []).append(float(m.group(2)))
        total = statistics.median(timings.pop("Execution Time", [0.0]))
        out.append({"case": label, "total_ms": total,
                    "triggers": {k: statistics.median(v) for k, v in sorted(timings.items())}})
    for t in made:
        b.drop_table(t)
    return out


def text(rows: list[dict]) -> str:
    lines = ["Where the time of one write goes (EXPLAIN ANALYZE, one session, median of "
             f"{TRIES} tries, ms):"]
    for r in rows:
        parts = ", ".join(f"{k} {v:.3f}" for k, v in r["triggers"].items()) or "no trigger"
        lines.append(f"  {r['case']:<36} {r['total_ms']:.3f} ms  ({parts})")
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    head = ("| single-row statement | execution (ms) | of which, per trigger (ms) |\n|---|---|---|\n")
    body = "".join(
        f"| {r['case']} | {r['total_ms']:.3f} | "
        + (", ".join(f"`{k}` {v:.3f}" for k, v in r["triggers"].items()) or "—") + " |\n" for r in rows)
    return (f"Where the time of one write goes — `EXPLAIN ANALYZE` of one statement in one session, median of "
            f"{TRIES} tries (this explains the ratios; it is not one):\n\n" + head + body)
