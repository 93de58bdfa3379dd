"""A readable end-of-run summary for people, next to the JSON report for machines."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_summary(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    overview = Table(title="claimsflow run", show_header=False, title_justify="left")
    overview.add_column("what", style="bold")
    overview.add_column("count", justify="right")
    overview.add_row("Run name", str(report["run_name"]))
    skipped = {"xact": "skipped (no assignment id)", "claimx": "skipped (unknown event type)"}
    for domain, label in (("xact", "XACT"), ("claimx", "ClaimX")):
        events = report["events"][domain]
        attachments = report["attachments"][domain]
        if not events["received"]:
            continue
        overview.add_row(f"{label} events received", str(events["received"]))
        overview.add_row("  accepted", str(events["accepted"]))
        overview.add_row("  duplicates", str(events["duplicates"]))
        overview.add_row(f"  {skipped[domain]}", str(events["skipped"]))
        overview.add_row("  invalid (dead-lettered)", str(events["invalid"]))
        overview.add_row(f"{label} files uploaded", str(attachments["uploaded"]))
        overview.add_row("  rejected before download", str(attachments["rejected"]))
        overview.add_row("  dead-lettered", str(attachments["dead_lettered"]))
    overview.add_row("Dead letters (all)", str(report["dead_letters"]))
    orchestrations = report["orchestrations"]
    overview.add_row(
        "Orchestrations completed / failed", f"{orchestrations['completed']} / {orchestrations['failed']}"
    )
    invariants = report["invariants"]
    checked = f"{invariants['events_checked']} events, {invariants['attachments_checked']} attachments"
    overview.add_row(
        "Invariants (nothing lost or doubled)",
        f"[green]hold[/] ({checked})" if invariants["ok"] else f"[red]VIOLATED[/] ({checked})",
    )
    overview.add_row("Elapsed", f"{report['elapsed_seconds']} s")
    console.print(overview)
    for violation in invariants["violations"]:
        console.print(f"[red]invariant violated:[/] {violation}")

    tables = Table(title="Delta tables", title_justify="left")
    tables.add_column("table")
    tables.add_column("rows", justify="right")
    tables.add_column("uri")
    for name, info in report["tables"].items():
        tables.add_row(name, str(info["rows"]), info["uri"])
    console.print(tables)
    for domain, files in report["files"].items():
        console.print(
            f"{domain} files: container [bold]{files['container']}[/] prefix [bold]{files['prefix']}[/]"
        )
    if report.get("azurite_started_for_run"):
        console.print(
            "Azurite was started for this run and keeps running so the results can be opened; "
            "the next run replaces it. Connection string is in the report (--report)."
        )
