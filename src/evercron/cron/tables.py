"""O(1) stepping tables over a set of allowed values (fields and month days alike)."""

from __future__ import annotations

from collections.abc import Collection


def next_table(values: Collection[int], size: int) -> list[int]:
    """table[v] = the smallest allowed value >= v, or -1, for v in 0..size-1."""
    if not values:
        return [-1] * size
    low, high = min(values), max(values)
    if high - low + 1 == len(values):  # a contiguous run, such as `*`
        return [low] * low + [*range(low, high + 1)] + [-1] * (size - high - 1)
    table, start = [-1] * size, 0
    for value in sorted(values):
        table[start : value + 1] = [value] * (value + 1 - start)
        start = value + 1
    return table


def prev_table(values: Collection[int], size: int) -> list[int]:
    """table[v] = the largest allowed value <= v, or -1, for v in 0..size-1."""
    if not values:
        return [-1] * size
    low, high = min(values), max(values)
    if high - low + 1 == len(values):
        return [-1] * low + [*range(low, high + 1)] + [high] * (size - high - 1)
    table, ordered = [-1] * size, sorted(values)
    for value, following in zip(ordered, [*ordered[1:], size], strict=True):
        table[value:following] = [value] * (following - value)
    return table
