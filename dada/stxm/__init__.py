"""STXM: the channels (darkfield, dpc, azimuthal, radial) and their interface (channel.py, beam.py);
the machinery that runs them in one pass lives apart (engine.py, kernels.py, pixelmaps.py, decode.py)."""

import os

# bitshuffle (the kernels' decoder, the polar reduction's records) runs OpenMP threads of its own on top of the
# engine's threads unless told otherwise before it loads: on a busy 2-core machine their waiting made a block's
# record 5-10x slower than one thread (measured). The engine's threads are this package's parallelism.
os.environ.setdefault("OMP_NUM_THREADS", "1")
