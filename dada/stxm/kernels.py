"""The numba kernels of the STXM pass: pixels into classes, classes into bins, chunks decoded in place.

Per frame and bin they accumulate the valid counts' sum and their first moments in pixel
coordinates (Σv, Σv·col, Σv·row: integers for integer frames, so exact in any order of addition)
and count saturated pixels. Zero pixels add nothing, which the kernels
use: sparse SAXS frames cost little beyond their decoding. Frames stored one per bitshuffle-LZ4
chunk are decoded block by block so each 8 KiB block is processed while in L1 cache, and blocks
outside the rows any channel needs are skipped.
"""

from __future__ import annotations

import numba
import numpy as np

from dada.stxm.decode import _untrans, lz4_block, next_block, read_header


@numba.njit(nogil=True, cache=True, inline="always")
def _pixel(v, p, cls, cls_mom, width, cutoff, acc, csat):
    """One pixel's count into its class (saturated ones only counted). Neighbours mostly share a
    class: four banks of accumulators break the add-store-load chain through one slot."""
    fv = np.float64(v)
    c = cls[p]
    if fv >= cutoff:
        csat[c] += 1.0
    else:
        acc[p & 3, c, 0] += fv
        if cls_mom[c]:
            acc[p & 3, c, 1] += fv * (p % width)
            acc[p & 3, c, 2] += fv * (p // width)


@numba.njit(nogil=True, cache=True, inline="always")
def _run(frame, e0, e1, base, cls, cls_mom, width, cutoff, acc, csat):
    """Pixels e0..e1, zeros included (they add nothing; a branch each costs more)."""
    for e in range(e0, e1):
        _pixel(frame[e], base + e, cls, cls_mom, width, cutoff, acc, csat)


@numba.njit(nogil=True, cache=True)
def _add_pixels(frame, e0, e1, base, cls, cls_mom, width, cutoff, acc, csat):
    """Accumulate pixels e0..e1 of a frame span whose first element is pixel ``base``.

    Sparse frames are mostly zeros: runs of 32 zero bytes are skipped with one test.
    """
    per = 8 // frame.itemsize  # pixels per 64-bit word
    if per < 1 or frame.size % per or (frame.ctypes.data % 8) or e1 - e0 < 8 * per:
        _run(frame, e0, e1, base, cls, cls_mom, width, cutoff, acc, csat)
        return
    words = frame.view(np.uint64)
    w = (e0 + per - 1) // per
    w1 = e1 // per
    _run(frame, e0, w * per, base, cls, cls_mom, width, cutoff, acc, csat)
    while w + 4 <= w1:
        if (words[w] | words[w + 1] | words[w + 2] | words[w + 3]) != 0:
            _run(frame, w * per, (w + 4) * per, base, cls, cls_mom, width, cutoff, acc, csat)
        w += 4
    _run(frame, w * per, e1, base, cls, cls_mom, width, cutoff, acc, csat)


POPCOUNT = np.array([bin(b).count("1") for b in range(256)], dtype=np.int64)
BIT_POSITIONS = np.array([[i for i in range(8) if b >> i & 1] + [0] * (8 - bin(b).count("1")) for b in range(256)],
                         dtype=np.int64)


@numba.njit(nogil=True, cache=True, inline="always")
def _or_planes(planes, out, n, count):
    """out[:n] = OR of ``count`` consecutive planes of n items each."""
    for k in range(n):
        out[k] = planes[k]
    for j in range(1, count):
        base = j * n
        for k in range(n):
            out[k] |= planes[base + k]


@numba.njit(nogil=True, cache=True)
def _decode_nonzero(chunk, pos, clen, m, scratch, out_bytes, itemsize, nonzero):
    """One block: LZ4 into bit planes, their OR into a bitmap of nonzero elements, then un-bitshuffle.

    Bitshuffle stores plane after plane, each ``m / 8`` bytes where bit i of byte k is element 8k+i,
    so the OR of the planes marks exactly the nonzero elements.
    """
    if not lz4_block(chunk, pos, clen, m * itemsize, scratch):
        return False
    plane = m // 8
    if plane % 8 == 0:  # whole 64-bit words per plane (every block but maybe the last)
        _or_planes(scratch.view(np.uint64), nonzero.view(np.uint64), plane // 8, 8 * itemsize)
    else:
        _or_planes(scratch, nonzero, plane, 8 * itemsize)
    return _untrans(scratch.ctypes.data, out_bytes.ctypes.data, m, itemsize) >= 0


@numba.njit(nogil=True, cache=True)
def _distribute(acc, csat, cls_bins, values, sat):
    """Spread the classes' sums into the channels' bins, and clear them for the next frame."""
    for c in range(1, cls_bins.shape[0]):
        s0 = acc[0, c, 0] + acc[1, c, 0] + acc[2, c, 0] + acc[3, c, 0]
        s1 = acc[0, c, 1] + acc[1, c, 1] + acc[2, c, 1] + acc[3, c, 1]
        s2 = acc[0, c, 2] + acc[1, c, 2] + acc[2, c, 2] + acc[3, c, 2]
        if s0 == 0.0 and csat[c] == 0.0:
            continue
        for k in range(cls_bins.shape[1]):
            b = cls_bins[c, k]
            if b >= 0:
                values[b, 0] += s0
                values[b, 1] += s1
                values[b, 2] += s2
                sat[b] += csat[c]
    acc[:] = 0.0
    csat[:] = 0.0


@numba.njit(nogil=True, cache=True)
def accumulate_frame(frame, cls, cls_mom, cls_bins, width, cutoff, first, last, acc, csat, values, sat):
    """A decoded frame (flat) into one point's bin moments."""
    _add_pixels(frame, first, last, 0, cls, cls_mom, width, cutoff, acc, csat)
    _distribute(acc, csat, cls_bins, values, sat)


@numba.njit(nogil=True, cache=True)
def accumulate_chunk(chunk, block_buf, scratch, cls, cls_mom, cls_bins, width, cutoff, first, last, acc,
                     csat, values, sat):
    """Decode a bitshuffle-LZ4 chunk block by block, accumulating each block while it is in cache.

    Only blocks overlapping pixels [first, last) are decoded, and of each block only the nonzero
    pixels are visited, found from the OR of its bit planes. ``block_buf`` is a typed buffer of at
    least one block; returns False if the chunk is corrupt.
    """
    itemsize = block_buf.itemsize
    out_bytes = block_buf.view(np.uint8)
    if chunk.size < 12:
        return False
    total, block_bytes = read_header(chunk)
    n = cls.shape[0]
    if total != n * itemsize or block_bytes <= 0 or block_bytes % itemsize or block_bytes > out_bytes.size:
        return False
    block = block_bytes // itemsize
    nonzero = np.empty(block // 64 + 2, dtype=np.uint64).view(np.uint8)  # one bit per element of a block
    pos = 12
    e = 0
    while n - e >= 8 and e < last:
        m, clen = next_block(chunk, pos, e, n, block)
        if clen < 0:
            return False
        pos += 4
        if e + m > first:
            if not _decode_nonzero(chunk, pos, clen, m, scratch, out_bytes, itemsize, nonzero):
                return False
            lo, hi = max(first - e, 0), min(last - e, m)
            for k in range(lo // 8, (hi + 7) // 8):
                bits = nonzero[k]
                if bits == 0:
                    continue
                for t in range(POPCOUNT[bits]):
                    i = 8 * k + BIT_POSITIONS[bits, t]
                    if lo <= i < hi:
                        _pixel(block_buf[i], e + i, cls, cls_mom, width, cutoff, acc, csat)
        pos += clen
        e += m
    if e < last and e < n:  # the last n % 8 elements are stored raw
        rest = n - e
        if pos + rest * itemsize > chunk.size:
            return False
        out_bytes[: rest * itemsize] = chunk[pos:pos + rest * itemsize]
        _add_pixels(block_buf, max(first - e, 0), min(last - e, rest), e, cls, cls_mom, width, cutoff,
                    acc, csat)
    _distribute(acc, csat, cls_bins, values, sat)
    return True


@numba.njit(nogil=True, cache=True)
def accumulate_chunks(buf, ends, rows, block_buf, scratch, cls, cls_mom, cls_bins, width, cutoff, first, last,
                      acc, csat, values, sat):
    """Several chunks (concatenated; ``ends`` their end offsets) into rows ``rows`` of values/sat.

    One call per batch keeps the interpreter and the GIL out of the per-frame path. Returns the
    position in the batch of the first corrupt chunk, or -1.
    """
    start = 0
    for b in range(ends.size):
        ok = accumulate_chunk(buf[start:ends[b]], block_buf, scratch, cls, cls_mom, cls_bins, width, cutoff,
                              first, last, acc, csat, values[rows[b]], sat[rows[b]])
        if not ok:
            return b
        start = ends[b]
    return -1


BATCH = 16  # frames per kernel call

