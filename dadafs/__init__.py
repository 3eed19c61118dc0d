"""dadafs: a read-only caching filesystem between a storage head node and worker nodes.

``dadafs serve`` exposes a directory tree over HTTP and keeps read fragments on
local SSD; ``dadafs mount`` is a FUSE filesystem on each worker that caches
metadata and fragments in RAM, reads ahead on sequential access and fails fast
when the server is away. Given a shared secret or allowed networks, the server answers only mounts
that send the secret or come from those networks.
"""

FRAGMENT_SIZE = 4 * 2**20
SECRET_HEADER = "X-Dadafs-Secret"  # the shared secret a mount sends on every request
SECRET_ENV = "DADAFS_SECRET"  # the secret from the environment, when no --secret-file is given


def reuse_freed_memory() -> None:
    """Keep freed multi-MiB buffers in the heap for reuse instead of returning them to the kernel.

    Fragment buffers are pooled (dadafs.buffers), but other large buffers come and go: the event
    loop's send buffers, short last fragments, listings. glibc serves those with mmap and unmaps
    them when freed, so each new one is faulted in page by page (slow on these machines). Raising
    the mmap and trim thresholds lets the next one reuse the memory of the last.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, 256 * 2**20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1024 * 2**20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass
