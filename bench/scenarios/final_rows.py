"""R1 final rows: what an ERP does to them most, marking them paid. A one-row UPDATE of only the mutable
column of a final row, enforcement only, against the same UPDATE on a plain table. The guard's WHEN clause
lets it by without calling the guard (the row compared whole and exactly, its exempt columns put back).
The same UPDATE on a numbered table (final_row_mark_paid_numbered) also runs the numbering's settle step,
which finds that no row became final; on a table numbered per company with 2,000 companies
(final_row_mark_paid_many_series) it must cost the same: a transaction that has updated no counter reads none
(docs/numbering.md, "A write that makes no row final reads no counter")."""

from __future__ import annotations

from psycopg import sql

from ..harness import Bench
from ..stats import Result, Target
from ..tables import Features, protect
from .common import Variant, pgbench_group

T_MARK_PAID = Target(0.95, source="issue 17 (enforcement only: single-row UPDATE)")
FILL_FINAL = ("INSERT INTO {} (company_id, issued_on, amount, note, status) "
              "SELECT %s, current_date, (g %% 1000)::numeric, 'prefill', 'approved' FROM generate_series(1, %s) g")
MANY_SERIES = 2000  # companies of final_row_mark_paid_many_series: a series (a counter) each
FILL_FINAL_MANY = ("INSERT INTO {} (company_id, issued_on, amount, note, status) "
                   "SELECT 1 + g %% %s, current_date, (g %% 1000)::numeric, 'prefill', 'approved' "
                   "FROM generate_series(1, %s) g")


def final_row_mark_paid(b: Bench, f: Features) -> list[Result]:
    rows = b.profile.prefill_rows
    b.create_doc_table("f_plain", rows=rows, fill_sql=FILL_FINAL)
    b.create_doc_table("f_enforced", rows=rows, fill_sql=FILL_FINAL)
    protect(b, "f_enforced", audit=False)
    numbered = f.numbering
    if numbered:  # protected before the rows go in, so that they are numbered as they become final
        b.create_doc_table("f_numbered", rows=0)
        protect(b, "f_numbered", audit=False, numbered=True)
        b.execute(sql.SQL(FILL_FINAL).format(sql.Identifier("f_numbered")), (1, rows))
        b.create_doc_table("f_paid_many", rows=0)
        protect(b, "f_paid_many", audit=False, numbered=True)
        b.execute(sql.SQL(FILL_FINAL_MANY).format(sql.Identifier("f_paid_many")), (MANY_SERIES, rows))
    b.prepare_for_run("f_plain", "f_enforced", *(["f_numbered", "f_paid_many"] if numbered else []))
    s = pgbench_group(b, {
        "plain": Variant(b.script("update_mutable_odd", table="f_plain"), variables={"rows": rows}),
        "enforced": Variant(b.script("update_mutable_odd", table="f_enforced"), variables={"rows": rows}),
        **({"numbered": Variant(b.script("update_mutable_odd", table="f_numbered"), variables={"rows": rows}),
            "numbered_many": Variant(b.script("update_mutable_odd", table="f_paid_many"),
                                     variables={"rows": rows})}
           if numbered else {}),
    })
    return [Result("final_row_mark_paid",
                   f"single-row UPDATE of a final row's mutable column (paid), enforcement only "
                   f"({b.profile.clients} clients)", target=T_MARK_PAID,
                   note=f"{rows:,} approved invoices, odd ids; protect as in every scenario, audit triggers removed",
                   baseline_samples=s["plain"], value_samples=s["enforced"])] + ([
        Result("final_row_mark_paid_numbered",
               f"the same UPDATE on a numbered table, enforcement and numbering ({b.profile.clients} clients)",
               note=f"{rows:,} approved invoices numbered INV-{{SCOPE}}-{{SEQ:5}} as they were inserted; the "
                    "numbering's settle step runs for every UPDATE and finds that no row became final",
               baseline_samples=s["plain"], value_samples=s["numbered"]),
        Result("final_row_mark_paid_many_series",
               f"the same UPDATE on a table numbered per company, {MANY_SERIES:,} series "
               f"({b.profile.clients} clients)",
               note=f"{rows:,} approved invoices of {MANY_SERIES:,} companies, numbered INV-{{SCOPE}}-{{SEQ:5}}: "
                    "a counter per company; the settle step reads none of them when the transaction has updated "
                    "none (it read all of them before 2026-11-29)",
               baseline_samples=s["plain"], value_samples=s["numbered_many"])] if numbered else [])


SCENARIOS = (final_row_mark_paid,)
