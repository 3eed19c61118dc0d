"""The numba kernels of the STXM pass: pixels into classes, classes into bins, chunks read in place.

Per frame and bin they accumulate the valid counts' sum and their first moments in pixel
coordinates (Σv, Σv·col, Σv·row: integers for integer frames, so exact in any order of addition),
where a channel asks for them their largest value and Σv², and count saturated pixels. Zero
pixels add nothing, which the kernels use: sparse SAXS frames cost little beyond their LZ4
decompression. Frames stored one per bitshuffle-LZ4 chunk are taken block by block while each 8 KiB
block is in L1 cache; blocks outside the pixels any channel needs are skipped, and sparse ones are
never un-shuffled: their few wanted nonzero pixels are read straight from the bit planes (dense or
bright blocks, where that would cost more, are un-shuffled).

A pass's pixel maps reach the kernels as a named tuple (``pixelmaps.KernelMaps``). A pass that also computes the
polar reduction passes its ``Cells`` too (else None, and its code is compiled out): each pixel in the reduction
adds its count straight into its point's row of integer counts per cell (radial bin x sector) and its count and
moments into its point's radial bin, so nothing of the reduction is kept or spread per frame; a saturated pixel
is only logged, as (point, cell). The per-frame accumulator ``acc`` is (nclasses, 4): Σv, Σv·col, Σv·row and the
saturated-pixel count of each class; when a channel of the pass takes a maximum or Σv², (nclasses, 7): also the
largest count, Σv² and the pixels visited (pixels never visited are zeros, which the maximum then includes).
Only the classes a channel feeds take what it declares (``KernelMaps`` orders them so that is two bound tests).
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic, overload

from dada.stxm.decode import CORRUPT, END, RAW, START, _untrans, chunk_block, decode_block, lz4_block, next_span

ONE = np.uint64(1)
LOW_PLANES = 8  # bit planes of a value's low byte: all a sparse frame's dim pixels need
# Gathering a pixel from its planes costs about 3x per plane what un-shuffling costs per byte of the block:
# blocks where gathering would cost more are un-shuffled (dense or bright frames), the others never are.
GATHER_VS_UNSHUFFLE = 3


@intrinsic
def popcount(typingctx, src):
    """Set bits of an integer (one instruction)."""
    if not isinstance(src, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return src(src), codegen


def _takes_extremes(c: int, ext: tuple[int, int] | None) -> bool:
    """Whether class ``c`` takes a maximum and Σv² (``ext``: that range of classes, or None)."""
    return ext is not None and ext[0] <= c < ext[1]


@overload(_takes_extremes)
def _takes_extremes_typed(c, ext):
    """For the kernels: a constant False when the maps' ``ext`` is None, so the test is compiled out."""
    if isinstance(ext, types.NoneType):
        return lambda c, ext: False
    return lambda c, ext: ext[0] <= c < ext[1]


class Cells(NamedTuple):
    """The polar reduction's part of a pass as the kernels take it, one per thread (its own log and state; the
    rows of ``counts`` and ``radial`` it writes are its own points')."""

    table: np.ndarray  # (H*W,) radial bin << shift | sector of each pixel in the reduction, else -1 (int32) or
    # 0xFFFF (uint16: half the bytes a visited pixel brings into cache, wherever the entries fit)
    shift: int
    ns: int  # sectors: a pixel's cell is radial bin x ns + sector
    width: int  # frame columns
    inv_width: float  # 1 / width: a pixel's row without an integer division
    counts: np.ndarray  # (npoints, cells) uint32: Σv of each cell's valid unsaturated pixels
    radial: np.ndarray  # (npoints, nr, 3) int64: Σv, Σv·col, Σv·row of each radial bin's (about pixel (0, 0))
    log: np.ndarray  # (capacity, 2) int32: (point, cell) of each saturated pixel in the reduction
    state: np.ndarray  # (2,) int64: log entries used; nonzero when a count was not a non-negative integer
    room: int  # pixels in the reduction: the log must have this much room before a frame


class _Point(NamedTuple):
    """``Cells`` at one point, its arrays as addresses (their owner, ``Cells``, outlives it): an array in what the
    per-pixel code binds costs reference counting per pixel (measured ~10x the reduction's own work)."""

    table: int
    wide: bool  # the table is int32 (else uint16)
    shift: int
    ns: int
    inv_width: float
    counts: int  # the point's row: (cells,) uint32
    radial: int  # the point's row: (nr, 3) int64
    log: int
    state: int
    row: int


def _element(builder, addr, i, bits):
    return builder.gep(builder.inttoptr(addr, ir.IntType(bits).as_pointer()), [i])


@intrinsic
def _i32(typingctx, addr, i):
    """Element ``i`` of the int32 array at ``addr``, as int64."""
    def codegen(context, builder, signature, args):
        return builder.sext(builder.load(_element(builder, args[0], args[1], 32)), ir.IntType(64))

    return types.int64(types.int64, types.int64), codegen


@intrinsic
def _u16(typingctx, addr, i):
    """Element ``i`` of the uint16 array at ``addr``, as int64."""
    def codegen(context, builder, signature, args):
        return builder.zext(builder.load(_element(builder, args[0], args[1], 16)), ir.IntType(64))

    return types.int64(types.int64, types.int64), codegen


@intrinsic
def _i64(typingctx, addr, i):
    """Element ``i`` of the int64 array at ``addr``."""
    def codegen(context, builder, signature, args):
        return builder.load(_element(builder, args[0], args[1], 64))

    return types.int64(types.int64, types.int64), codegen


@intrinsic
def _set(typingctx, addr, i, v, bits):
    """Element ``i`` of the int32 or int64 (``bits``, a literal) array at ``addr`` = v."""
    if not isinstance(bits, types.IntegerLiteral):
        return None
    width = bits.literal_value

    def codegen(context, builder, signature, args):
        builder.store(builder.trunc(args[2], ir.IntType(width)) if width < 64 else args[2],
                      _element(builder, args[0], args[1], width))
        return context.get_dummy_value()

    return types.none(types.int64, types.int64, types.int64, bits), codegen


@intrinsic
def _add_u32(typingctx, addr, i, v):
    """Element ``i`` of the uint32 array at ``addr`` += v (modulo 2**32)."""
    def codegen(context, builder, signature, args):
        at = _element(builder, args[0], args[1], 32)
        total = builder.add(builder.zext(builder.load(at), ir.IntType(64)), args[2])
        builder.store(builder.trunc(total, ir.IntType(32)), at)
        return context.get_dummy_value()

    return types.none(types.int64, types.int64, types.int64), codegen


@intrinsic
def _add_i64(typingctx, addr, i, v):
    """Element ``i`` of the int64 array at ``addr`` += v."""
    def codegen(context, builder, signature, args):
        at = _element(builder, args[0], args[1], 64)
        builder.store(builder.add(builder.load(at), args[2]), at)
        return context.get_dummy_value()

    return types.none(types.int64, types.int64, types.int64), codegen


@numba.njit(nogil=True, cache=True)
def _log_saturated(log, state, row, t, shift, ns):
    """A saturated pixel of table entry ``t`` at point ``row`` into the log (called, not inlined: it is rare)."""
    q = (t >> shift) * ns + (t & ((1 << shift) - 1))
    n = _i64(state, 0)
    _set(log, 2 * n, row, 32)
    _set(log, 2 * n + 1, q, 32)
    _set(state, 0, n + 1, 64)


@numba.njit(nogil=True, cache=True, inline="always")
def _inexact(state):
    _set(state, 1, 1, 64)


def _cell_of(p: int, pt: _Point | None) -> int:
    """Pixel ``p``'s entry in the reduction's table: radial bin << shift | sector, -1 if none (always, without)."""
    return -1


@overload(_cell_of)
def _cell_of_typed(p, pt):
    if isinstance(pt, types.NoneType):
        return lambda p, pt: -1
    return lambda p, pt: _i32(pt.table, p) if pt.wide else _narrow_entry(_u16(pt.table, p))


@numba.njit(nogil=True, cache=True, inline="always")
def _narrow_entry(t):
    return -1 if t == 0xFFFF else t


def _saturated(t: int, pt: _Point | None, width: int, acc: np.ndarray) -> None:
    """A saturated pixel of table entry ``t`` into the log (a call: it is rare). ``width`` and ``acc`` are unused,
    here and in ``_to_cell``: taking them keeps numba's pruning of reference counts working in ``_pixel`` of a pass
    without a reduction (without them, that pass measured 8x slower: the maps and ``acc`` counted per pixel)."""


@overload(_saturated)
def _saturated_typed(t, pt, width, acc):
    if isinstance(pt, types.NoneType):
        return lambda t, pt, width, acc: None
    return lambda t, pt, width, acc: _log_saturated(pt.log, pt.state, pt.row, t, pt.shift, pt.ns)


def _to_cell(fv: float, p: int, t: int, pt: _Point | None, width: int, acc: np.ndarray) -> None:
    """An unsaturated pixel's count into its cell and radial bin (table entry ``t``; ``width``: the frame's). A
    count that is not a non-negative integer marks the state (no record is kept). A cell's sum beyond uint32 is
    not tested here, per pixel (a test on the sum just loaded cost a third of the reduction's time): the engine
    finds it afterwards, as a ring's Σv beyond uint32 (a cell holds part of its ring's pixels)."""


@overload(_to_cell, inline="always")
def _to_cell_typed(fv, p, t, pt, width, acc):
    if isinstance(pt, types.NoneType):
        return lambda fv, p, t, pt, width, acc: None

    def impl(fv, p, t, pt, width, acc):
        r = t >> pt.shift
        v = np.int64(fv)
        _add_u32(pt.counts, r * pt.ns + (t & ((1 << pt.shift) - 1)), v)
        y = np.int64((p + 0.5) * pt.inv_width)  # never within 0.5 / width of an integer: exact
        _add_i64(pt.radial, 3 * r, v)
        _add_i64(pt.radial, 3 * r + 1, v * (p - y * width))
        _add_i64(pt.radial, 3 * r + 2, v * y)
        if v != fv or v < 0:
            _inexact(pt.state)

    return impl


def _point(cells: Cells | None, row: int) -> _Point | None:
    """The reduction's rows of point ``row`` (None without a reduction)."""
    if cells is None:
        return None
    return _Point(cells.table.ctypes.data, cells.table.itemsize == 4, cells.shift, cells.ns, cells.inv_width,
                  cells.counts[row].ctypes.data, cells.radial[row].ctypes.data, cells.log.ctypes.data,
                  cells.state.ctypes.data, row)


@overload(_point)
def _point_typed(cells, row):
    if isinstance(cells, types.NoneType):
        return lambda cells, row: None
    return lambda cells, row: _Point(
        np.int64(cells.table.ctypes.data), cells.table.itemsize == 4, cells.shift, cells.ns, cells.inv_width,
        np.int64(cells.counts[row].ctypes.data), np.int64(cells.radial[row].ctypes.data),
        np.int64(cells.log.ctypes.data), np.int64(cells.state.ctypes.data), np.int64(row))


def _has_room(cells: Cells | None) -> bool:
    """Whether the log holds another frame's saturated pixels (always, without a reduction)."""
    return cells is None or cells.state[0] + cells.room <= cells.log.shape[0]


@overload(_has_room)
def _has_room_typed(cells):
    if isinstance(cells, types.NoneType):
        return lambda cells: True
    return lambda cells: cells.state[0] + cells.room <= cells.log.shape[0]


@numba.njit(nogil=True, cache=True, inline="always")
def _pixel(fv, p, maps, cutoff, acc, pt):
    """One pixel's count into its class: saturated ones are only counted; classes 1..mom_end-1 (those
    of channels that need centres of mass) also take the count's moments, the classes in ``maps.ext``
    (those of channels that need a maximum or Σv²) its maximum, square and a visit; and into the
    reduction's cell at point ``pt`` (None: no reduction)."""
    c = maps.cls[p]
    if fv >= cutoff:
        acc[c, 3] += 1.0
    else:
        acc[c, 0] += fv
        if 0 < c < maps.mom_end:
            acc[c, 1] += fv * (p % maps.width)
            acc[c, 2] += fv * (p // maps.width)
        if _takes_extremes(c, maps.ext):  # compiled out when no channel takes them
            acc[c, 4] = max(acc[c, 4], fv)
            acc[c, 5] += fv * fv
            acc[c, 6] += 1.0
    t = _cell_of(p, pt)  # the polar reduction's part: none when ``pt`` is None (a constant -1: compiled out)
    if t >= 0:
        if fv >= cutoff:
            _saturated(t, pt, maps.width, acc)
        else:
            _to_cell(fv, p, t, pt, maps.width, acc)


@numba.njit(nogil=True, cache=True, inline="always")
def _run(frame, e0, e1, base, maps, cutoff, acc, pt):
    """Pixels e0..e1, zeros included (they add nothing; a branch each costs more)."""
    for e in range(e0, e1):
        _pixel(np.float64(frame[e]), base + e, maps, cutoff, acc, pt)


@numba.njit(nogil=True, cache=True)
def _add_pixels(frame, e0, e1, base, maps, cutoff, acc, pt):
    """Accumulate pixels e0..e1 of a decoded frame span whose first element is pixel ``base``.

    Sparse frames are mostly zeros: runs of 32 zero bytes are skipped with one test.
    """
    per = 8 // frame.itemsize  # pixels per 64-bit word
    if per < 1 or frame.size % per or (frame.ctypes.data % 8) or e1 - e0 < 8 * per:
        _run(frame, e0, e1, base, maps, cutoff, acc, pt)
        return
    words = frame.view(np.uint64)
    w = (e0 + per - 1) // per
    w1 = e1 // per
    _run(frame, e0, w * per, base, maps, cutoff, acc, pt)
    while w + 4 <= w1:
        if (words[w] | words[w + 1] | words[w + 2] | words[w + 3]) != 0:
            _run(frame, w * per, (w + 4) * per, base, maps, cutoff, acc, pt)
        w += 4
    _run(frame, w * per, e1, base, maps, cutoff, acc, pt)


@numba.njit(nogil=True, cache=True, inline="always")
def _gather(planes, lw, k, t, top):
    """Element 64k + t of a block from its bit planes 0..top-1, ``lw`` words each."""
    v = np.uint64(0)
    for j in range(top):
        v |= ((planes[j * lw + k] >> t) & ONE) << np.uint64(j)
    return v


@numba.njit(nogil=True, cache=True, inline="always")
def _or_planes(planes, lw, j0, j1, out):
    """out[:lw] = OR of planes j0..j1-1 (``lw`` words each); plane by plane, so it vectorises."""
    out[:lw] = 0
    for j in range(j0, j1):
        plane = planes[j * lw:(j + 1) * lw]
        for k in range(lw):
            out[k] |= plane[k]


@numba.njit(nogil=True, cache=True)
def _sparse_block(planes, lw, nplanes, e, maps, cutoff, low, high, block_buf, acc, pt):
    """A block still in bit planes (``lw`` words each): only its wanted nonzero pixels are visited.

    Bitshuffle stores plane after plane, bit t of word k of plane j being bit j of element 64k+t, so
    the OR of a word's planes marks its nonzero elements; ANDed with ``want`` (pixels in some bin)
    it drops zeros, masked pixels and pixels no channel needs before any work. A pixel's value is
    gathered from its low byte's planes, or from all of them when a wanted pixel of the word has
    higher bits (the bright and the saturated ones), through ``block_buf[0]`` (the frame's dtype,
    so signed values keep their sign). Where that would cost more than un-shuffling the block
    (dense or bright frames), the block is un-shuffled into ``block_buf`` and the same pixels read.
    """
    want = maps.want
    _or_planes(planes, lw, 0, LOW_PLANES, low)
    _or_planes(planes, lw, LOW_PLANES, nplanes, high)
    w0 = e // 64
    cost = 0
    for k in range(lw):
        w = want[w0 + k]
        cost += popcount((low[k] | high[k]) & w) * (nplanes if high[k] & w else LOW_PLANES)
    itemsize = nplanes // 8
    unshuffled = cost * GATHER_VS_UNSHUFFLE > 64 * lw * itemsize
    if unshuffled:
        _untrans(planes.ctypes.data, block_buf.ctypes.data, 64 * lw, itemsize)
    for k in range(lw):
        w = want[w0 + k]
        hits = (low[k] | high[k]) & w
        if hits == 0:
            continue
        bright = (high[k] & w) != 0
        base = e + 64 * k
        while hits:
            t = np.uint64(trailing_zeros(hits))
            hits &= hits - ONE
            if unshuffled:
                fv = np.float64(block_buf[64 * k + np.int64(t)])
            elif bright:
                block_buf[0] = _gather(planes, lw, k, t, nplanes)
                fv = np.float64(block_buf[0])
            else:  # a constant trip count: unrolled
                fv = np.float64(np.int64(_gather(planes, lw, k, t, LOW_PLANES)))
            _pixel(fv, base + np.int64(t), maps, cutoff, acc, pt)


@numba.njit(nogil=True, cache=True)
def _distribute(acc, maps, values, sat):
    """Spread the classes' sums into the channels' bins (moments only into the columns of channels that
    need them, maxima and squares likewise), clearing each class for the next frame."""
    cls_bins = maps.cls_bins
    for c in range(1, cls_bins.shape[0]):
        s0, s1, s2, ns = acc[c, 0], acc[c, 1], acc[c, 2], acc[c, 3]
        if _takes_extremes(c, maps.ext):
            if acc[c, 6] < maps.cls_pixels[c] - ns:  # some valid pixels were zeros, never visited
                acc[c, 4] = max(acc[c, 4], 0.0)
            for k in range(maps.ext_col_start, maps.ext_col_end):
                b = cls_bins[c, k]
                if b >= 0:
                    values[b, 3] = max(values[b, 3], acc[c, 4])
                    values[b, 4] += acc[c, 5]
            acc[c, 4] = -np.inf
            acc[c, 5] = acc[c, 6] = 0.0
        if s0 == 0.0 and s1 == 0.0 and s2 == 0.0 and ns == 0.0:
            continue
        for k in range(cls_bins.shape[1]):
            b = cls_bins[c, k]
            if b >= 0:
                values[b, 0] += s0
                if k < maps.mom_cols:
                    values[b, 1] += s1
                    values[b, 2] += s2
                sat[b] += ns
        acc[c, 0] = acc[c, 1] = acc[c, 2] = acc[c, 3] = 0.0
    acc[0, 0] = acc[0, 1] = acc[0, 2] = acc[0, 3] = 0.0


@numba.njit(nogil=True, cache=True)
def accumulate_frame(frame, maps, cutoff, acc, values, sat, cells, row):
    """A decoded frame (flat) into one point's bins (and its reduction's row ``row``). Returns False, having
    done nothing, when the reduction's log lacks room for it."""
    if not _has_room(cells):
        return False
    _add_pixels(frame, maps.first, maps.last, 0, maps, cutoff, acc, _point(cells, row))
    _distribute(acc, maps, values, sat)
    return True


@numba.njit(nogil=True, cache=True)
def accumulate_chunk(chunk, bufs, maps, cutoff, acc, values, sat, pt):
    """A bitshuffle-LZ4 chunk into one point's bins, block by block while each is in cache.

    Only blocks overlapping pixels [first, last) are decompressed, and their wanted nonzero pixels
    are read from the bit planes; blocks not aligned to 64 elements (other writers' block sizes)
    are un-shuffled and walked instead. ``bufs`` = (one block of the frame's dtype, LZ4 scratch,
    two words per 64 elements of a block); ``pt``: the reduction at this point, or None. Returns False if the
    chunk is corrupt.
    """
    block_buf, scratch, low, high = bufs
    first, last = maps.first, maps.last
    itemsize = block_buf.itemsize
    out_bytes = block_buf.view(np.uint8)
    n = maps.cls.shape[0]
    block = chunk_block(chunk, n, itemsize, out_bytes.size)
    if block < 0:
        return False
    planes = scratch.view(np.uint64)
    e, pos = 0, START
    while True:
        m, at, clen, pos = next_span(chunk, n, block, last, pos, e)
        if clen == END:
            break
        if clen == CORRUPT:
            return False
        if clen == RAW:
            if at + m * itemsize > chunk.size:
                return False
            out_bytes[: m * itemsize] = chunk[at:at + m * itemsize]
            _add_pixels(block_buf, max(first - e, 0), min(last - e, m), e, maps, cutoff, acc, pt)
        elif e + m > first:
            if m % 64 == 0 and e % 64 == 0:
                if not lz4_block(chunk, at, clen, m * itemsize, scratch):
                    return False
                _sparse_block(planes, m // 64, 8 * itemsize, e, maps, cutoff, low, high, block_buf, acc, pt)
            else:
                if not decode_block(chunk, at, clen, m * itemsize, scratch, out_bytes, itemsize):
                    return False
                _add_pixels(block_buf, max(first - e, 0), min(last - e, m), e, maps, cutoff, acc, pt)
        e += m
    _distribute(acc, maps, values, sat)
    return True


@numba.njit(nogil=True, cache=True)
def accumulate_chunks(buf, starts, ends, rows, bufs, maps, cutoff, acc, values, sat, cells):
    """Several chunks (chunk b at ``buf[starts[b]:ends[b]]``) into rows ``rows`` of values/sat (and of the
    reduction's ``cells``, or None).

    One call per batch keeps the interpreter and the GIL out of the per-frame path. Returns the
    position in the batch of the first corrupt chunk, -2 - b when the reduction's log lacks room
    for chunk b (chunks before it are done), or -1.
    """
    for b in range(ends.size):
        if not _has_room(cells):
            return -2 - b
        if not accumulate_chunk(buf[starts[b]:ends[b]], bufs, maps, cutoff, acc, values[rows[b]], sat[rows[b]],
                                _point(cells, rows[b])):
            return b
    return -1


BATCH = 16  # frames per kernel call when chunks are read one by one
BATCH_BYTES = 4 * 2**20  # compressed bytes per kernel call when a batch is read at once
