"""The scenarios, one module per concern; each ``run(b, features)`` returns its report lines.

Order matters only for the time budget and for the audit trail (the audit scenarios come last, so the
chain they verify holds every event the other scenarios wrote).
"""

from __future__ import annotations

from . import audit, final_rows, numbering, periods, referential, verify, writes

MODULES = {
    "writes": writes,
    "final": final_rows,
    "numbering": numbering,
    "periods": periods,
    "referential": referential,
    "audit": audit,
    "verify": verify,
}
