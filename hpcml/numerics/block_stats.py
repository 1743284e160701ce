"""Sufficient statistics of row blocks and the one fixed way they are combined.

A block's statistics are a mapping of named arrays; the name's prefix says how two are
combined: ``sum_`` adds, ``qr_`` stacks two R factors and takes the R of the stack (TSQR:
the R of all rows, as accurate as one QR of the whole matrix), ``cat_`` concatenates in row
order, ``set_`` takes the sorted union.

Rows are cut into units of ``UNIT_ROWS``; every unit's statistics are combined along one
binary tree fixed by unit number (units 2j and 2j+1, then pairs of pairs...). A block of
2**m units starting at a multiple of 2**m is one node of that tree, so whatever the block
size, the number of workers or the backend, the same additions and QRs happen in the same
order: the answer is bit-identical.
"""
from __future__ import annotations

import io
from typing import Callable, Iterable

import numpy as np

UNIT_ROWS = 1024

Stats = dict[str, np.ndarray]


def _qr_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.qr(np.vstack([a, b]), mode="r")


_RULES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "sum_": np.add, "qr_": _qr_r, "cat_": lambda a, b: np.concatenate([a, b]), "set_": np.union1d,
}


def _rule(key: str):
    for prefix, rule in _RULES.items():
        if key.startswith(prefix):
            return rule
    raise KeyError(f"statistic {key!r} has no combining rule (prefix sum_, qr_, cat_ or set_)")


def combine(a: Stats, b: Stats) -> Stats:
    """The statistics of the rows of ``a`` followed by those of ``b``."""
    return {k: _rule(k)(a[k], b[k]) for k in a}


def tree(nodes: Iterable[Stats], combine_two: Callable[[Stats, Stats], Stats] = None) -> Stats:
    """Nodes of one tree level (in order) combined up to the root: pairs (2j, 2j+1), an odd
    last node passed up as it is. Streamed: at most one node per level is held (a unit's
    statistics may be a large Gram matrix), combined as a binary counter and, at the end,
    from the right, which is the level-by-level order exactly."""
    join = combine if combine_two is None else combine_two
    stack: list[tuple[int, Stats]] = []  # (level, node), levels strictly decreasing
    for node in nodes:
        level = 0
        while stack and stack[-1][0] == level:
            node = join(stack.pop()[1], node)
            level += 1
        stack.append((level, node))
    if not stack:
        raise ValueError("no rows")
    root = stack.pop()[1]
    while stack:
        root = join(stack.pop()[1], root)
    return root


class ArrivingTree:
    """The same tree as :func:`tree` over ``count`` nodes that arrive in any order (blocks as
    workers finish them): a node is combined with its sibling as soon as both are here, so
    only nodes whose sibling is still out are held."""

    def __init__(self, count: int):
        if count < 1:
            raise ValueError("no rows")
        self.sizes = [count]  # nodes on each level
        while self.sizes[-1] > 1:
            self.sizes.append(-(-self.sizes[-1] // 2))
        self.held: dict[tuple[int, int], Stats] = {}
        self.root: Stats | None = None

    def add(self, index: int, node: Stats) -> None:
        level = 0
        while level < len(self.sizes) - 1:
            sibling = index ^ 1
            if sibling >= self.sizes[level]:  # an odd last node goes up as it is
                pass
            elif (level, sibling) in self.held:
                other = self.held.pop((level, sibling))
                node = combine(other, node) if sibling < index else combine(node, other)
            else:
                self.held[(level, index)] = node
                return
            level, index = level + 1, index // 2
        self.root = node


def units(start: int, stop: int) -> Iterable[tuple[int, int]]:
    """The units of rows [start, stop) (start a multiple of UNIT_ROWS)."""
    for a in range(start, stop, UNIT_ROWS):
        yield a, min(stop, a + UNIT_ROWS)


def block_units(block_rows: int) -> int:
    """Units per block: a power of two (the tree's shape), from a wanted block size in rows."""
    wanted = max(1, block_rows // UNIT_ROWS)
    return 1 << (wanted.bit_length() - 1)


def to_bytes(stats: Stats) -> bytes:
    """npz bytes: arrays only, never pickles (statistics may travel through shared files)."""
    buffer = io.BytesIO()
    np.savez(buffer, **stats)
    return buffer.getvalue()


def from_bytes(data: bytes) -> Stats:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}
