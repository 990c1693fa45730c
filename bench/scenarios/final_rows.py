"""R1 final rows: what an ERP does to them most, marking them paid. A one-row UPDATE of only the mutable
column of a final row, enforcement only, against the same UPDATE on a plain table. The guard's WHEN clause
lets it by without calling the guard (the row compared whole and exactly, its exempt columns put back)."""

from __future__ import annotations

from ..harness import Bench
from ..stats import Result, Target
from ..tables import Features, protect
from .common import Variant, pgbench_group

T_MARK_PAID = Target(0.95, source="issue 17 (enforcement only: single-row UPDATE)")
FILL_FINAL = ("INSERT INTO {} (company_id, issued_on, amount, note, status) "
              "SELECT %s, current_date, (g %% 1000)::numeric, 'prefill', 'approved' FROM generate_series(1, %s) g")


def final_row_mark_paid(b: Bench, f: Features) -> list[Result]:
    rows = b.profile.prefill_rows
    b.create_doc_table("f_plain", rows=rows, fill_sql=FILL_FINAL)
    b.create_doc_table("f_enforced", rows=rows, fill_sql=FILL_FINAL)
    protect(b, "f_enforced", audit=False)
    b.prepare_for_run("f_plain", "f_enforced")
    s = pgbench_group(b, {
        "plain": Variant(b.script("update_mutable_odd", table="f_plain"), variables={"rows": rows}),
        "enforced": Variant(b.script("update_mutable_odd", table="f_enforced"), variables={"rows": rows}),
    })
    return [Result("final_row_mark_paid",
                   f"single-row UPDATE of a final row's mutable column (paid), enforcement only "
                   f"({b.profile.clients} clients)", target=T_MARK_PAID,
                   note=f"{rows:,} approved invoices, odd ids; protect as in every scenario, audit triggers removed",
                   baseline_samples=s["plain"], value_samples=s["enforced"])]


SCENARIOS = (final_row_mark_paid,)
