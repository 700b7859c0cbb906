"""Which earlier photos could be the same or a near shot: hash buckets, so a big folder is not compared pair by pair."""

from __future__ import annotations

import itertools

import numpy as np

from ioncannon.engine.photos.quality import DHASH_MAX, NEAR_SHOT_DIFF, PHASH_MAX

# shot_distance is a mean absolute difference over the pixels of two 16×16 colour thumbnails, so it is at least
# the mean over the three channels of the difference of their channel means: two photos within NEAR_SHOT_DIFF have
# channel means within 3 × NEAR_SHOT_DIFF of each other on every channel. A grid of that cell size puts them in
# the same or a neighbouring cell, so looking in 27 cells finds every pair the full comparison would find.
_CELL = 3 * NEAR_SHOT_DIFF + 0.5  # the half: float rounding at a cell edge must never lose a pair
_NEIGHBOURS = list(itertools.product((-1, 0, 1), repeat=3))
# Then a cheaper bound: block means are a contraction of the mean absolute difference, so comparing 4×4 block means
# of the thumbnails never gives more than shot_distance; only photos under NEAR_SHOT_DIFF there are compared fully.
_BLOCKS = 4
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

Cell = tuple[int, int, int]


def _cells(means: np.ndarray) -> set[Cell]:
    return {(int(a), int(b), int(c)) for a, b, c in np.floor_divide(means, _CELL).astype(np.int64)}


def _popcount(values: np.ndarray) -> np.ndarray:
    return _POPCOUNT[values.view(np.uint8)].reshape(len(values), 8).sum(axis=1)


class ShotIndex:
    """The photos kept so far, by slot, bucketed by their thumbnails' colour and held as hash arrays."""

    def __init__(self, capacity: int) -> None:
        self._whole: dict[Cell, set[int]] = {}    # cell of the uncropped frame -> slots
        self._framed: dict[Cell, set[int]] = {}   # cells of every framing -> slots
        self._cells: dict[int, tuple[Cell, set[Cell]]] = {}
        self._blocks = np.zeros((capacity, 81, _BLOCKS * _BLOCKS * 3), dtype=np.float32)
        self._dhash = np.zeros(capacity, dtype=np.uint64)
        self._phash = np.zeros(capacity, dtype=np.uint64)
        self._used = np.zeros(capacity, dtype=bool)

    @staticmethod
    def _means(framings: np.ndarray) -> np.ndarray:
        return framings.reshape(len(framings), -1, 3).mean(axis=1)

    @staticmethod
    def _block_means(framings: np.ndarray) -> np.ndarray:
        n, side = len(framings), framings.shape[1]
        step = side // _BLOCKS
        blocks = framings.reshape(n, _BLOCKS, step, _BLOCKS, step, 3).mean(axis=(2, 4), dtype=np.float32)
        return blocks.reshape(n, -1)

    def put(self, slot: int, framings: np.ndarray, hashes: tuple[int, int] | None) -> None:
        """Keep a photo in `slot` (taking the place of the one there)."""
        if slot in self._cells:
            whole, framed = self._cells.pop(slot)
            self._whole[whole].discard(slot)
            for cell in framed:
                self._framed[cell].discard(slot)
        means = self._means(framings)
        whole = next(iter(_cells(means[:1])))
        framed = _cells(means)
        self._cells[slot] = (whole, framed)
        self._whole.setdefault(whole, set()).add(slot)
        for cell in framed:
            self._framed.setdefault(cell, set()).add(slot)
        self._blocks[slot, : len(framings)] = self._block_means(framings)
        self._used[slot] = hashes is not None
        if hashes is not None:
            self._dhash[slot], self._phash[slot] = np.uint64(hashes[0]), np.uint64(hashes[1])

    def candidates(self, framings: np.ndarray, hashes: tuple[int, int] | None) -> list[int]:
        """Every kept slot that may be within NEAR_SHOT_DIFF of this photo, or a near duplicate by its hashes."""
        means = self._means(framings)
        found: set[int] = set()
        # this photo's framings against each kept photo's uncropped frame, and the other way round
        for (a, b, c) in _cells(means):
            for da, db, dc in _NEIGHBOURS:
                found |= self._whole.get((a + da, b + db, c + dc), set())
        (a, b, c), = _cells(means[:1])
        for da, db, dc in _NEIGHBOURS:
            found |= self._framed.get((a + da, b + db, c + dc), set())
        slots = np.array(sorted(found), dtype=np.int64)
        if len(slots):
            mine = self._block_means(framings)
            theirs = self._blocks[slots]
            mine_in_theirs = np.abs(mine[None, :, :] - theirs[:, :1, :]).mean(axis=2).min(axis=1)
            theirs_in_mine = np.abs(theirs - mine[None, :1, :]).mean(axis=2).min(axis=1)
            bound = np.minimum(mine_in_theirs, theirs_in_mine)
            found = {int(s) for s in slots[bound <= NEAR_SHOT_DIFF + 0.01]}
        if hashes is not None and self._used.any():
            near = (_popcount(self._dhash ^ np.uint64(hashes[0])) <= DHASH_MAX) & \
                   (_popcount(self._phash ^ np.uint64(hashes[1])) <= PHASH_MAX) & self._used
            found.update(int(i) for i in np.flatnonzero(near))
        return sorted(found)
