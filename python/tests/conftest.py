"""Shared fixtures for farmem's pytest suite.

Runtimes here are deliberately small: 1 MiB of local memory over an embedded server, so a
container of a few MiB lives mostly in far memory and every test crosses the fetch/evacuate
path. ``FARMEM_STRESS=1`` makes the randomized tests run more operations.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

import farmem

#: Local budget of the test runtimes: far below the containers' sizes.
LOCAL_MEMORY = "1MiB"
#: Capacity of the embedded server.
FAR_MEMORY = "256MiB"
#: Scale of the randomized tests (operations per test).
STRESS = os.environ.get("FARMEM_STRESS") == "1"


@pytest.fixture
def rt() -> Iterator[farmem.Runtime]:
    """A small runtime (1 MiB local), closed after the test."""
    runtime = farmem.Runtime(local_memory=LOCAL_MEMORY, far_memory=FAR_MEMORY, workers=1)
    try:
        yield runtime
    finally:
        runtime.close()


@pytest.fixture(scope="module")
def shared_rt() -> Iterator[farmem.Runtime]:
    """One small runtime for a whole module (cheaper for many short tests)."""
    runtime = farmem.Runtime(local_memory=LOCAL_MEMORY, far_memory=FAR_MEMORY, workers=1)
    try:
        yield runtime
    finally:
        runtime.close()
