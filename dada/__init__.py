"""dada, the data daemon for scanning X-ray beamlines."""

import os

# Read-only readers of files that other processes (detector writers, NFS) may hold: HDF5's file
# locks only get in the way. Set before h5py loads HDF5; an explicit setting by the user wins.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

__version__ = "0.1.0"
