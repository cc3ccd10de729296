"""The C allocator's thresholds in a service process (glibc only; elsewhere nothing changes).

A large answer (a 100k-bar GetCandles page: its columns, the encoded message, grpc's own copy) allocates blocks of a
few MB. glibc starts with a 128 KiB mmap threshold, so each such block is a fresh mapping, faulted in page by page and
unmapped when freed; its dynamic threshold rises only after a larger block is freed, which in practice happens once a
REST answer of such a page has been encoded. So a process that serves large pages over gRPC alone stayed slow: 16
callers of 100k-bar pages, 27 calls/s from a fresh process, 55-58 once REST had served one such page, 57-58 with the
thresholds below set at start (where the dynamic threshold would end up). The cost: up to TRIM_THRESHOLD of freed
memory at the heap's top is kept for reuse instead of returned to the system.

An operator who sets glibc's own variables (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, GLIBC_TUNABLES) keeps
them: nothing is changed then.
"""
from __future__ import annotations

import ctypes
import os
import platform

MMAP_THRESHOLD = 16 << 20  # blocks up to this size come from the heap
TRIM_THRESHOLD = 32 << 20  # free memory kept at the heap's top
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def _operator_settings() -> bool:
    """Any of glibc's own variables set (transport.config documents them): the operator chose."""
    return (os.environ.get("MALLOC_MMAP_THRESHOLD_") is not None or os.environ.get("MALLOC_TRIM_THRESHOLD_") is not None
            or os.environ.get("GLIBC_TUNABLES") is not None)


def tune() -> bool:
    """Set the thresholds; True if they were set (glibc, and the operator set none of glibc's own variables)."""
    if platform.libc_ver()[0] != "glibc" or _operator_settings():
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
