"""farmem's exception hierarchy, and misuse that must raise rather than crash.

The crash tests run their misuse in a child interpreter: a segfault or abort there fails the
test with the child's output instead of killing the whole pytest run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import farmem

# Every error kind's class, its C status code and the built-in it also derives from.
KINDS = [
    ("InvalidArgument", 1, ValueError),
    ("OutOfLocalMemory", 2, MemoryError),
    ("OutOfFarMemory", 3, MemoryError),
    ("OutOfDeviceMemory", 4, MemoryError),
    ("Unsupported", 5, NotImplementedError),
    ("IoError", 6, OSError),
    ("ProtocolError", 7, None),
    ("AuthError", 8, PermissionError),
    ("ServerError", 9, None),
    ("Disconnected", 10, ConnectionError),
    ("Timeout", 11, TimeoutError),
    ("NotFound", 12, LookupError),
    ("Closed", 13, RuntimeError),
    ("Panicked", 14, None),
    ("ParseError", 15, ValueError),
    ("InternalError", 16, None),
]


def test_base_class() -> None:
    assert issubclass(farmem.FarmemError, Exception)
    assert farmem.FarmemError.__module__ == "farmem"
    assert farmem.FarmemError.code == 0


@pytest.mark.parametrize("name, code, builtin", KINDS)
def test_every_kind_has_its_class(name: str, code: int, builtin: type | None) -> None:
    cls = getattr(farmem, name)
    assert name in farmem.__all__
    assert issubclass(cls, farmem.FarmemError)
    assert cls.__module__ == "farmem"
    assert cls.code == code
    if builtin is not None:
        assert issubclass(cls, builtin)
    err = cls("what failed")
    assert str(err) == "what failed"
    with pytest.raises(farmem.FarmemError):
        raise err


def test_codes_are_unique() -> None:
    codes = [getattr(farmem, name).code for name, _, _ in KINDS]
    assert sorted(codes) == list(range(1, 17))


def test_raised_errors_carry_kind_and_message() -> None:
    with pytest.raises(farmem.InvalidArgument) as info:
        farmem.Runtime(local_memory=10)
    assert str(info.value).startswith("invalid argument: ")
    assert "10 bytes" in str(info.value)
    rt = farmem.Runtime(local_memory="1MiB", far_memory="64MiB", workers=1)
    rt.close()
    with pytest.raises(farmem.Closed) as closed:
        rt.metrics()
    assert str(closed.value).startswith("closed: ")
    assert "farmem.Runtime" in str(closed.value)


def test_out_of_far_memory_is_an_error_not_a_crash() -> None:
    with farmem.Runtime(local_memory="1MiB", far_memory="1MiB", workers=1) as rt:
        with pytest.raises(MemoryError) as info:
            # 8 MiB into a 1 MiB server.
            v = farmem.Vector(rt, "i64")
            for _ in range(16):
                v.extend(range(65_536))
        assert isinstance(info.value, farmem.FarmemError)


def run_child(code: str) -> str:
    """Runs `code` in a fresh interpreter; fails with its output if it crashes or fails."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"child exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_misuse_does_not_crash() -> None:
    out = run_child(
        """
        import gc, pickle, copy
        import numpy as np
        import farmem

        rt = farmem.Runtime(local_memory="1MiB", far_memory="64MiB", workers=1)
        a = farmem.Array(rt, "i64", 100_000)
        v = farmem.Vector(rt, "f64", [1.0, 2.0])
        l = farmem.List(rt, "u8", [1, 2, 3])
        s = farmem.Stack(rt, "i32", [1])
        q = farmem.Queue(rt, "i32", [1])
        m = farmem.HashMap(rt)
        it = iter(a)
        next(it)
        lit = iter(l)
        for obj in (rt, a, v, l, s, q, m):
            for attempt in (pickle.dumps, copy.copy):
                try:
                    attempt(obj)
                except TypeError:
                    pass
        try:
            farmem.Array.__new__(farmem.Array)
        except TypeError:
            pass
        rt.close()
        rt.close()
        failures = 0
        for call in (
            lambda: next(it), lambda: next(lit), lambda: a[0], lambda: v.append(1.0),
            lambda: l.popleft(), lambda: s.pop(), lambda: q.push(1), lambda: m.get(1),
            lambda: len(m), lambda: list(a), lambda: 1 in v, lambda: a.to_numpy(),
            lambda: farmem.Array.from_numpy(rt, np.arange(3)),
        ):
            try:
                call()
            except farmem.Closed:
                failures += 1
        print(failures)
        del a, v, l, s, q, m, it, lit
        gc.collect()
        # A runtime that is never closed is closed when the interpreter exits.
        rt2 = farmem.Runtime(local_memory="1MiB", far_memory="64MiB", workers=1)
        keep = farmem.Vector(rt2, "i64", range(10))
        print("ok")
        """
    )
    assert out.split() == ["13", "ok"]


def test_closing_while_another_thread_works_does_not_crash() -> None:
    out = run_child(
        """
        import threading
        import numpy as np
        import farmem

        rt = farmem.Runtime(local_memory="1MiB", far_memory="256MiB", workers=1)
        a = farmem.Array.from_numpy(rt, np.arange(1 << 20, dtype=np.int64))
        started = threading.Event()
        outcome = []

        def work():
            started.set()
            try:
                while True:
                    assert int(a.to_numpy()[-1]) == (1 << 20) - 1
                    a[5] = 5
            except farmem.Closed:
                outcome.append("closed")

        t = threading.Thread(target=work)
        t.start()
        started.wait()
        rt.close()
        t.join()
        print(outcome)
        """
    )
    assert out.strip() == "['closed']"


def test_python_callbacks_that_reenter_a_container_raise_instead_of_deadlocking() -> None:
    out = run_child(
        """
        import farmem

        rt = farmem.Runtime(local_memory="1MiB", far_memory="64MiB", workers=1)
        a = farmem.Array(rt, "i64", 10)

        class Sneaky:
            def __index__(self):
                return a[0] + 1  # uses `a` while `a[1] = ...` is converting this value

        try:
            a[1] = Sneaky()
        except RuntimeError as e:
            print("reentrant" if "re-entrantly" in str(e) else e)

        class Closer:
            def __index__(self):
                rt.close()
                return 5

        v = farmem.Vector(rt, "i64", [1])
        try:
            v.append(Closer())
        except farmem.FarmemError as e:
            print("error", type(e).__name__)
        try:
            len(v)
        except farmem.Closed:
            print("closed")
        print(rt.closed)
        """
    )
    lines = out.splitlines()
    assert lines[0] == "reentrant"
    assert lines[-2:] == ["closed", "True"]


def test_constructors_name_the_bad_argument() -> None:
    with farmem.Runtime(local_memory="1MiB", far_memory="64MiB", workers=1) as rt:
        cases = [
            (lambda: farmem.Array("rt", "i64", 3), TypeError, "Runtime"),
            (lambda: farmem.Array(rt, "i64", "3"), TypeError, "integer"),
            (lambda: farmem.Array(rt, "i64", -3), ValueError, "negative"),
            (lambda: farmem.Array(rt, "q", 3), ValueError, "unknown dtype"),
            (lambda: farmem.Vector(rt, "i64", 5), TypeError, "iterable"),
            (lambda: farmem.List(rt, "u8", [1, -1]), OverflowError, "out of range"),
            (lambda: farmem.Stack(rt, "f32", ["a"]), TypeError, "numbers"),
            (lambda: farmem.Queue(rt, None, []), TypeError, "dtype"),
            (lambda: farmem.HashMap(rt, key="str"), ValueError, "key type"),
            (lambda: farmem.HashMap(rt, cache_size="lots"), ValueError, "cache_size"),
        ]
        for make, exc, words in cases:
            with pytest.raises(exc) as info:
                make()
            assert words in str(info.value), (words, str(info.value))
