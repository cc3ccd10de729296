"""transport.allocator: a service process sets glibc's thresholds unless the operator set glibc's own variables."""
from __future__ import annotations

import platform

import pytest

from transport import allocator

OPERATOR_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's")


@glibc
def test_the_thresholds_are_set_in_a_process_without_the_operators_own(monkeypatch):
    for var in OPERATOR_VARS:
        monkeypatch.delenv(var, raising=False)
    assert allocator.tune() is True


@glibc
@pytest.mark.parametrize("var", OPERATOR_VARS)
def test_an_operators_own_glibc_setting_is_left_alone(monkeypatch, var):
    monkeypatch.setenv(var, "glibc.malloc.trim_threshold=0" if var == "GLIBC_TUNABLES" else "0")
    assert allocator.tune() is False
