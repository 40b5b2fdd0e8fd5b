"""The reference graph's walks, shared by sweeps (sweep.py) and usage reports (usage.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from mirror.stores.blob_rows import DELETE_BATCH

# A read of the index: `Database.rows`, or a connection's `execute_fetchall` in a transaction.
Query = Callable[[str, tuple[Any, ...]], Awaitable[Iterable[Any]]]


async def closure(query: Query, roots: set[str]) -> tuple[set[str], dict[str, set[str]]]:
    """`roots` and everything they reference, with the references (parent → children)."""
    reached, edges = set(roots), dict[str, set[str]]()
    frontier: list[str] = list(roots)
    while frontier:
        found = await select_in(query, "SELECT parent, child FROM refs WHERE parent", frontier)
        frontier = []
        for parent, child in found:
            edges.setdefault(parent, set()).add(child)
            if child not in reached:
                reached.add(child)
                frontier.append(child)
    return reached, edges


async def select_in(
    query: Query, sql: str, keys: Iterable[str], args: tuple[Any, ...] = ()
) -> list[Any]:
    """`sql` (ending in the column; `args` for its other marks) IN keys, in batches under
    SQLite's variable limit."""
    ordered: list[str] = sorted(keys)
    rows: list[Any] = []
    for start in range(0, len(ordered), DELETE_BATCH):
        batch = ordered[start : start + DELETE_BATCH]
        marks = ", ".join("?" * len(batch))
        rows.extend(await query(f"{sql} IN ({marks})", (*args, *batch)))
    return rows
