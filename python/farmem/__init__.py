"""farmem: a far-memory runtime for Python.

A :class:`Runtime` keeps a small working set in local memory and the rest on a memory server
(embedded in this process by default). Containers made from it (:class:`Array`, :class:`Vector`,
:class:`List`, :class:`Stack`, :class:`Queue`, :class:`HashMap`) and :class:`DataFrame` hold
their data in far memory and behave like their Python counterparts::

    import farmem
    with farmem.Runtime(local_memory="64MiB") as rt:
        a = farmem.Array(rt, "i64", 1_000_000)
        a[10] = 7
        total = a.to_numpy().sum()

Every failure is a :class:`FarmemError`; each subclass also derives from the built-in a Python
programmer would catch (``InvalidArgument`` is a ``ValueError``, ``OutOfFarMemory`` a
``MemoryError``, ``Closed`` a ``RuntimeError``, ...).
"""

from . import _farmem
from ._farmem import *  # noqa: F401,F403
from ._farmem import __version__  # noqa: F401

__all__ = [name for name in dir(_farmem) if not name.startswith("_")]
