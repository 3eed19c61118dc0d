"""h5grove's own reference server (its Tornado handlers), as a process: ``python h5grove_reference.py BASE PORT``.

The oracle of tests/test_h5grove.py. hdf5plugin is imported so it reads the bitshuffle-compressed Eiger data.
"""

from __future__ import annotations

import asyncio
import sys

import hdf5plugin  # noqa: F401  (registers the bitshuffle/LZ4 filters with HDF5)
import tornado.web
from h5grove.tornado_utils import get_handlers


async def main(base: str, port: int) -> None:
    app = tornado.web.Application(get_handlers(base))
    app.listen(port, address="127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
