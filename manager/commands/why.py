"""why TABLE KEY — every rule that freezes a row now, as a tree, with the way back in plain words."""

from __future__ import annotations

import json

import click

from ..context import Context, pass_context, rows
from ..output import echo, echo_json, printable

RULE_NAMES = {"final": "final (R1)", "period_lock": "locked period (R3)", "referenced": "referenced (R4)",
              "lines": "line of a frozen header (R4)"}


def parse_key(key: str) -> str:
    """`42` or `INV-7` for a one-column key, a JSON object for a composite one; returned as JSON text."""
    text = key.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as exc:  # not JSON, or a number past int()'s 4,300 digits
            raise click.BadParameter(f"not a JSON object: {exc}", param_hint="KEY") from exc
        return json.dumps(value)
    try:
        return json.dumps(json.loads(text))  # 42, "INV-7"
    except ValueError:
        return json.dumps(text)  # a bare string key


def build_tree(rows: list[dict]) -> list[dict]:
    """Nest the depth-first rows of why_locked: each reason gets the reasons of the row it comes from."""
    root: list[dict] = []
    last_at_depth: dict[int, dict] = {}
    for r in rows:
        node = {k: r[k] for k in ("table_name", "row_key", "row_label", "rule", "summary", "details", "way_back")}
        node["because"] = []
        depth = r["depth"]
        if depth == 0:
            root.append(node)
        else:
            last_at_depth[depth - 1]["because"].append(node)
        last_at_depth[depth] = node
    return root


def render(label: str, reasons: list[dict]) -> list[str]:
    lines = [f"{label} is frozen:"] if reasons else [f"{label} is not frozen: it can be changed"]

    def walk(nodes: list[dict], prefix: str) -> None:
        for i, n in enumerate(nodes):
            last = i == len(nodes) - 1
            branch, cont = ("└─ ", "   ") if last else ("├─ ", "│  ")
            lines.append(f"{prefix}{branch}{RULE_NAMES.get(n['rule'], n['rule'])}: {n['summary']}")
            lines.append(f"{prefix}{cont}   way back: {n['way_back']}")
            if n["because"]:
                lines.append(f"{prefix}{cont}   {n['because'][0]['row_label']} is itself frozen:")
                walk(n["because"], prefix + cont + "   ")

    walk(reasons, "")
    return [printable(line) for line in lines]  # each one line, whatever the labels hold


@click.command()
@click.argument("table")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts (the tree, nested under 'because').")
@pass_context
def why(ctx: Context, table: str, key: str, as_json: bool) -> None:
    """Explain why a row of TABLE is frozen, and the way back.

    KEY is the row's key: `42` for a one-column key, a JSON object such as '{"company_id": 1, "doc_no": 7}'
    for a composite one.
    """
    key_json = parse_key(key)
    with ctx.connect() as conn:
        found = rows(
            conn, "SELECT depth, table_name::text AS table_name, row_key, row_label, rule, summary, details, way_back "
            "FROM ledgerlock.why_locked(%s::regclass, %s::jsonb)", (table, key_json))
    label = found[0]["row_label"] if found else f"{table} {key}"
    tree = build_tree(found)
    if as_json:
        echo_json({"table": table, "key": json.loads(key_json), "frozen": bool(tree), "reasons": tree})
        return
    echo("\n".join(render(label, tree)), lines=True)  # its parts from the database are printable (render)
    if tree:
        echo()
        echo("way back, step by step:")
        for step in steps(tree):
            echo(f"  {step}")


def steps(tree: list[dict]) -> list[str]:
    """The way back as ordered steps: the deepest reasons first, then the ones they release."""
    out: list[str] = []

    def walk(nodes: list[dict]) -> None:
        for n in nodes:
            walk(n["because"])
            step = f"{n['row_label']}: {n['way_back']}"
            if step not in out:
                out.append(step)

    walk(tree)
    return [f"{i}. {s}" for i, s in enumerate(out, 1)]


def register(cli: click.Group) -> None:
    cli.add_command(why)
