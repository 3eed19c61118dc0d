"""STXM: the channels (darkfield, dpc, azimuthal, radial) and their interface (channel.py, beam.py);
the machinery that runs them in one pass lives apart (engine.py, kernels.py, pixelmaps.py, decode.py)."""
