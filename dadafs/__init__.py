"""dadafs: a read-only caching filesystem between a storage head node and worker nodes.

``dadafs serve`` exposes a directory tree over HTTP and keeps read fragments on
local SSD; ``dadafs mount`` is a FUSE filesystem on each worker that caches
metadata and fragments in RAM, reads ahead on sequential access and fails fast
when the server is away.
"""

FRAGMENT_SIZE = 4 * 2**20
