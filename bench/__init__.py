"""ledgerlock benchmarks: every rule measured side by side with a plain table in one run.

Absolute timings on a shared machine are noise; ratios of runs interleaved on the same server are not.
``python -m bench`` (``make bench``) starts a durable throwaway PostgreSQL (or uses ``--dsn``), prepares
identical protected and unprotected tables, runs each scenario with several pgbench clients, alternating
the variants of a scenario round by round, keeps the median of each, and reports ratios against the
targets of the rule issues. See docs/performance.md.
"""
