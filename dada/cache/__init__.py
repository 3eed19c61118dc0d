"""The result cache: computed answers by key, in RAM, on local disk and in an Aerospike cluster."""

from dada.cache.tiered import ResultCache, make_cache

__all__ = ["ResultCache", "make_cache"]
