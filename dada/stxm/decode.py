"""Bitshuffle-LZ4 chunks decoded block by block, without the GIL.

An HDF5 bitshuffle chunk (filter 32008 with LZ4) is a 12-byte header (total
bytes, block bytes; big-endian) followed by blocks, each a 4-byte big-endian
compressed size and an LZ4 block holding ``block`` bitshuffled elements; the
last ``n % 8`` elements are stored raw. Each block decodes on its own, so a
kernel can decode only the blocks covering the pixels it needs and process
each block while it is still in L1 cache.

The LZ4 and bit-transpose routines are the bitshuffle package's own C
functions (SIMD-dispatched), called from numba so that whole frames decode
with the GIL released and several threads work at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import bitshuffle.ext
import h5py
import llvmlite.binding
import numba
import numpy as np
from numba import types

BITSHUFFLE_FILTER = 32008
BSHUF_LZ4 = 2

llvmlite.binding.load_library_permanently(bitshuffle.ext.__file__)
_lz4 = types.ExternalFunction(
    "LZ4_decompress_safe", types.int32(types.voidptr, types.voidptr, types.int32, types.int32)
)
_untrans = types.ExternalFunction(
    "bshuf_untrans_bit_elem", types.int64(types.voidptr, types.voidptr, types.uintp, types.uintp)
)

# Largest block the decoder accepts (bitshuffle's default is 8 KiB; the format allows more).
MAX_BLOCK_BYTES = 1 << 20


@numba.njit(nogil=True, cache=True)
def read_header(chunk: np.ndarray) -> tuple[int, int]:
    total = 0
    for i in range(8):
        total = (total << 8) | np.int64(chunk[i])
    block = 0
    for i in range(8, 12):
        block = (block << 8) | np.int64(chunk[i])
    return total, block


@numba.njit(nogil=True, cache=True, inline="always")
def block_length(chunk, pos) -> int:
    """The compressed size stored before the block at ``pos`` (4 bytes, big-endian); -1 past the end."""
    if pos + 4 > chunk.size:
        return -1
    return (np.int64(chunk[pos]) << 24) | (np.int64(chunk[pos + 1]) << 16) | (np.int64(chunk[pos + 2]) << 8) \
        | np.int64(chunk[pos + 3])


@numba.njit(nogil=True, cache=True, inline="always")
def next_block(chunk, pos, e, n, block) -> tuple[int, int]:
    """Elements in the block starting at element ``e`` (a multiple of 8; the last n % 8 are raw) and its
    compressed length stored at ``pos``; the length is -1 if the chunk ends early."""
    m = min(block, n - e)
    m -= m % 8
    return m, block_length(chunk, pos)


@numba.njit(nogil=True, cache=True, inline="always")
def lz4_block(chunk, pos, clen, nbytes, scratch) -> bool:
    """The LZ4 block at ``chunk[pos:pos+clen]`` into ``scratch[:nbytes]``: still bitshuffled."""
    if pos + clen > chunk.size or nbytes > scratch.size:
        return False
    return _lz4(chunk[pos:].ctypes.data, scratch.ctypes.data, np.int32(clen), np.int32(nbytes)) == nbytes


@numba.njit(nogil=True, cache=True)
def decode_block(chunk, pos, clen, nbytes, scratch, out_bytes, itemsize) -> bool:
    """One LZ4 block at ``chunk[pos:pos+clen]`` into ``out_bytes[:nbytes]`` (un-bitshuffled)."""
    if not lz4_block(chunk, pos, clen, nbytes, scratch):
        return False
    return _untrans(scratch.ctypes.data, out_bytes.ctypes.data, nbytes // itemsize, itemsize) >= 0


START = 12  # byte where a chunk's first block is stored (after the header)
RAW, CORRUPT, END = -2, -1, -3  # what ``next_span`` gives as compressed length besides a block's


@numba.njit(nogil=True, cache=True)
def chunk_block(chunk, n, itemsize, max_bytes) -> int:
    """Elements per block of a chunk of ``n`` elements of ``itemsize`` bytes, from its header; -1 if the header
    says another size, or a block is empty, ragged or larger than ``max_bytes``."""
    if chunk.size < START:
        return -1
    total, block_bytes = read_header(chunk)
    if total != n * itemsize or block_bytes <= 0 or block_bytes % itemsize or block_bytes > max_bytes:
        return -1
    return block_bytes // itemsize


@numba.njit(nogil=True, cache=True, inline="always")
def next_span(chunk, n, block, stop, pos, e):
    """The walk over a chunk's blocks, written once: the span that starts at element ``e``, stored from byte
    ``pos`` (the first: 0, START), as (elements, position of its data, compressed length, where the next
    span is stored). The length is RAW for the raw tail (the last n % 8 elements), CORRUPT for a block
    whose length lies past the chunk's end, END past element ``stop`` or the chunk's last."""
    if n - e >= 8 and e < stop:
        m, clen = next_block(chunk, pos, e, n, block)
        if clen < 0:
            return m, pos, CORRUPT, pos
        return m, pos + 4, clen, pos + 4 + clen
    if e < stop and e < n:
        return n - e, pos, RAW, pos
    return 0, pos, END, pos


@numba.njit(nogil=True, cache=True)
def decode_into(chunk, out_bytes, itemsize, scratch) -> bool:
    """A whole chunk into ``out_bytes`` (a uint8 view of the frame); False if it is corrupt."""
    n = out_bytes.size // itemsize
    block = chunk_block(chunk, n, itemsize, scratch.size)
    if block < 0:
        return False
    e, pos = 0, START
    while True:
        m, at, clen, pos = next_span(chunk, n, block, n, pos, e)
        if clen == END:
            return True
        if clen == CORRUPT:
            return False
        if clen == RAW:
            if at + m * itemsize > chunk.size:
                return False
            out_bytes[e * itemsize:(e + m) * itemsize] = chunk[at:at + m * itemsize]
        elif not decode_block(chunk, at, clen, m * itemsize, scratch, out_bytes[e * itemsize:], itemsize):
            return False
        e += m


@dataclass(frozen=True)
class ChunkLayout:
    """Whether a dataset's frames can take the direct path: one frame per bitshuffle-LZ4 chunk."""

    direct: bool
    reason: str = ""


def chunk_layout(dset: h5py.Dataset) -> ChunkLayout:
    if dset.chunks is None or dset.chunks != (1, *dset.shape[1:]):
        return ChunkLayout(False, "not one frame per chunk")
    if dset.dtype.itemsize not in (1, 2, 4, 8) or dset.dtype.kind not in "ui":
        return ChunkLayout(False, f"dtype {dset.dtype}")
    plist = dset.id.get_create_plist()
    if plist.get_nfilters() != 1:
        return ChunkLayout(False, "filter pipeline is not bitshuffle alone")
    code, _flags, values, _name = plist.get_filter(0)
    if code != BITSHUFFLE_FILTER or len(values) < 5 or values[4] != BSHUF_LZ4:
        return ChunkLayout(False, "not bitshuffle-LZ4")
    return ChunkLayout(True)
