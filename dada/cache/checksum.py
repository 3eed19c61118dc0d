"""The checksum of cached bytes: a fast non-cryptographic hash (xxh3, 128 bits).

It guards cache entries against corruption (a torn write, a flipped bit, a piece of another value),
not against forgery: whoever can write the cache can write any answer. At memory speed, so checking
every read costs far less than the read.
"""

from __future__ import annotations

import xxhash


def checksum(value: bytes | memoryview) -> bytes:
    return xxhash.xxh3_128_digest(value)
