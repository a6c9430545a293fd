"""How each gateway fared, at the end of ``execwire run``: a table on a terminal, else one line when it matters."""

from __future__ import annotations

from .targets import Target

TABLE_ROWS = 50  # beyond this many gateways, the table shows only those that did not end with 0


def table(targets: list[Target], status: int) -> str:
    """Gateway, status, time and exit status of each gateway, and the command's exit status."""
    shown = targets
    hidden: list[Target] = []
    if len(targets) > TABLE_ROWS:
        shown = [target for target in targets if target.status != 0]
        hidden = [target for target in targets if target.status == 0]
    rows = [("gateway", "status", "time", "exit")]
    for target in shown:
        seconds = target.seconds
        rows.append((target.id, target.status_word, "-" if seconds is None else f"{seconds:.2f}s",
                     "-" if target.status is None else str(target.status)))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = [f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}".rstrip()
             for row in rows]
    if hidden:
        lines.append(f"... and {len(hidden)} more with exit status 0")
    lines.append(f"exit status {status}" + (" (the highest)" if len(targets) > 1 else ""))
    return "\n".join(lines) + "\n"


def line(targets: list[Target], status: int) -> str:
    """One line naming which gateways gave which status (empty when every one gave 0)."""
    if all(target.status in (0, None) for target in targets):
        return ""
    groups: dict[tuple[int | None, str], list[str]] = {}
    for target in targets:
        key = (target.status, target.status_word if target.status != 0 else "ok")
        groups.setdefault(key, []).append(target.id)
    parts = []
    for (code, word), ids in sorted(groups.items(), key=lambda item: (-(item[0][0] or 0), item[0][1])):
        if code == 0:
            continue
        shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
        parts.append(f"{'-' if code is None else code} from {shown} ({word})")
    ok = groups.get((0, "ok"), [])
    if ok:
        parts.append(f"0 from {len(ok)} other{'s' if len(ok) != 1 else ''}")
    return f"execwire: exit status {status}: " + "; ".join(parts) + "\n"
