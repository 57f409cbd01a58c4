"""farmem's containers against their Python counterparts.

Each container runs the same random operations (fixed seeds) as a Python oracle: Array against a
numpy array, Vector against a list, List against a list with deque's end operations, Stack
against a list, Queue against collections.deque, HashMap against a dict. The runtime has 1 MiB of
local memory and the containers hold several MiB, so most of their data is remote while the
operations run. A hypothesis state machine drives Vector as well.
"""

from __future__ import annotations

import collections
import random
import threading
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import farmem
from conftest import FAR_MEMORY, LOCAL_MEMORY, STRESS

SEED = 20261124
OPS = 20_000 if STRESS else 2_000

INT_TYPES = {
    "i8": np.int8,
    "i16": np.int16,
    "i32": np.int32,
    "i64": np.int64,
    "u8": np.uint8,
    "u16": np.uint16,
    "u32": np.uint32,
    "u64": np.uint64,
}
ALL_TYPES: dict[str, Any] = {**INT_TYPES, "f32": np.float32, "f64": np.float64}


def values_for(name: str, rng: np.random.Generator, n: int) -> np.ndarray:
    t = ALL_TYPES[name]
    if name.startswith("f"):
        return rng.standard_normal(n).astype(t) * 1000
    info = np.iinfo(t)
    return rng.integers(info.min, info.max, size=n, dtype=t, endpoint=True)


# --- dtypes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ALL_TYPES))
def test_dtype_names_rust_numpy_and_objects_agree(shared_rt: farmem.Runtime, name: str) -> None:
    t = ALL_TYPES[name]
    for spelling in (name, np.dtype(t).name, np.dtype(t), t):
        a = farmem.Array(shared_rt, spelling, 3)
        assert a.dtype == np.dtype(t)
        assert a.to_numpy().dtype == np.dtype(t)
    assert farmem.Vector(shared_rt, int).dtype == np.dtype(np.int64)
    assert farmem.Vector(shared_rt, float).dtype == np.dtype(np.float64)


def test_i8_means_eight_bits(shared_rt: farmem.Runtime) -> None:
    assert farmem.Array(shared_rt, "i8", 1).dtype == np.dtype(np.int8)


@pytest.mark.parametrize(
    "dtype, exc",
    [
        ("int", farmem.InvalidArgument),
        ("<i8", farmem.InvalidArgument),
        ("complex64", farmem.InvalidArgument),
        (np.complex64, farmem.InvalidArgument),
        (np.dtype(">i8"), farmem.InvalidArgument),
        (np.bool_, farmem.InvalidArgument),
        (3, TypeError),
        (object(), TypeError),
    ],
)
def test_bad_dtypes(shared_rt: farmem.Runtime, dtype: Any, exc: type) -> None:
    with pytest.raises(exc):
        farmem.Array(shared_rt, dtype, 1)


@pytest.mark.parametrize("name", list(INT_TYPES))
def test_integer_ranges_are_checked(shared_rt: farmem.Runtime, name: str) -> None:
    info = np.iinfo(INT_TYPES[name])
    a = farmem.Array(shared_rt, name, 2)
    a[0], a[1] = int(info.min), int(info.max)
    assert (a[0], a[1]) == (int(info.min), int(info.max))
    for bad in (int(info.min) - 1, int(info.max) + 1):
        with pytest.raises(OverflowError):
            a[0] = bad
    assert a[0] == int(info.min)
    a[0] = True
    a[1] = np.int8(3)
    assert (a[0], a[1]) == (1, 3)
    for wrong in (1.5, 2.0, "3", b"4", None, [1]):
        with pytest.raises(TypeError):
            a[0] = wrong
    assert a[0] == 1


def test_float_values(shared_rt: farmem.Runtime) -> None:
    f = farmem.Array(shared_rt, "f32", 3)
    f[0], f[1], f[2] = 0.1, 7, np.float64(2.5)
    assert f[0] == float(np.float32(0.1))
    assert (f[1], f[2]) == (7.0, 2.5)
    with pytest.raises(OverflowError):
        f[0] = 1e300
    f[0] = float("inf")
    assert f[0] == float("inf")
    with pytest.raises(TypeError):
        f[0] = "1.0"
    d = farmem.Array(shared_rt, "f64", 1)
    d[0] = 1e300
    assert d[0] == 1e300


def test_negative_length_and_index_types(shared_rt: farmem.Runtime) -> None:
    with pytest.raises(ValueError):
        farmem.Array(shared_rt, "i64", -1)
    a = farmem.Array(shared_rt, "i64", 4)
    with pytest.raises(TypeError):
        a["x"]
    with pytest.raises(TypeError):
        a[1.0]
    assert a[np.int64(1)] == 0
    with pytest.raises(IndexError):
        a[4]
    with pytest.raises(IndexError):
        a[-5]
    with pytest.raises(IndexError):
        a[4] = 1
    empty = farmem.Array(shared_rt, "u8", 0)
    assert len(empty) == 0 and list(empty) == [] and empty.to_numpy().shape == (0,)


# --- Array vs numpy -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["i64", "u16", "f32"])
def test_array_matches_numpy_under_random_operations(rt: farmem.Runtime, name: str) -> None:
    rng = random.Random(SEED)
    nrng = np.random.default_rng(SEED)
    n = (3 << 20) // np.dtype(ALL_TYPES[name]).itemsize  # 3 MiB: three times local memory
    oracle = values_for(name, nrng, n)
    a = farmem.Array.from_numpy(rt, oracle)
    assert len(a) == n
    for _ in range(OPS):
        op = rng.randrange(7)
        i = rng.randrange(-n, n)
        if op == 0:
            v = values_for(name, nrng, 1)[0]
            a[i] = v.item()
            oracle[i] = v
        elif op == 1:
            assert a[i] == oracle[i].item()
        elif op == 2:
            lo = rng.randrange(n)
            hi = min(n, lo + rng.randrange(1, 5000))
            step = rng.choice([1, 1, 2, 7, -1, -3])
            sl = slice(lo, hi, step) if step > 0 else slice(hi - 1, lo, step)
            got = a[sl]
            assert isinstance(got, np.ndarray) and got.dtype == oracle.dtype
            np.testing.assert_array_equal(got, oracle[sl])
        elif op == 3:
            lo = rng.randrange(n)
            hi = min(n, lo + rng.randrange(1, 3000))
            new = values_for(name, nrng, hi - lo)
            a[lo:hi] = new
            oracle[lo:hi] = new
        elif op == 4:
            lo = rng.randrange(n)
            sl = slice(lo, min(n, lo + 100), 3)
            new = values_for(name, nrng, len(range(*sl.indices(n))))
            a[sl] = list(new.tolist())
            oracle[sl] = new
        elif op == 5 and rng.random() < 0.1:
            # A membership test scans up to the whole array: keep them rare.
            v = oracle[rng.randrange(n)].item()
            assert v in a
        else:
            lo = rng.randrange(n)
            a[lo : lo + 10] = 0
            oracle[lo : lo + 10] = 0
    np.testing.assert_array_equal(a.to_numpy(), oracle)
    assert rt.metrics()["bytes_written_back"] > 0


def test_array_contains_and_iteration_follow_python(shared_rt: farmem.Runtime) -> None:
    a = farmem.Array.from_numpy(shared_rt, np.arange(10_000, dtype=np.int32))
    assert 9_999 in a and 0 in a
    assert 10_000 not in a and -1 not in a
    assert 5.0 in a and 5.5 not in a and "5" not in a and None not in a
    assert 2**80 not in a
    assert list(a) == list(range(10_000))
    assert a.to_list() == list(range(10_000))
    f = farmem.Array.from_numpy(shared_rt, np.array([0.5, np.nan], dtype=np.float64))
    assert 0.5 in f and float("nan") not in f


def test_slice_assignment_length_must_match(shared_rt: farmem.Runtime) -> None:
    a = farmem.Array(shared_rt, "i64", 10)
    with pytest.raises(ValueError):
        a[0:3] = [1, 2]
    with pytest.raises(TypeError):
        a[0:2] = np.array([1.5, 2.5])
    with pytest.raises(TypeError):
        a[0:2] = "ab"
    a[0:2] = np.array([7, 8], dtype=np.int8)  # safe widening cast
    a[::-1] = np.arange(10)
    assert a.to_list() == list(range(9, -1, -1))


# --- numpy round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ALL_TYPES))
def test_numpy_round_trips_every_dtype(rt: farmem.Runtime, name: str) -> None:
    nrng = np.random.default_rng(SEED)
    n = (2 << 20) // np.dtype(ALL_TYPES[name]).itemsize + 13
    data = values_for(name, nrng, n)
    a = farmem.Array.from_numpy(rt, data)
    v = farmem.Vector.from_numpy(rt, data)
    back_a, back_v = a.to_numpy(), v.to_numpy()
    for back in (back_a, back_v):
        assert back.dtype == data.dtype and back.shape == data.shape
        np.testing.assert_array_equal(back, data)
    # A strided view and a plain list go in too.
    strided = farmem.Vector.from_numpy(rt, data[::3])
    np.testing.assert_array_equal(strided.to_numpy(), data[::3])
    small = data[:100].tolist()
    np.testing.assert_array_equal(farmem.Vector(rt, name, small).to_numpy(), data[:100])


def test_from_numpy_casting_and_shape(shared_rt: farmem.Runtime) -> None:
    a = farmem.Array.from_numpy(shared_rt, np.arange(5, dtype=np.int32), dtype="i64")
    assert a.dtype == np.int64 and a.to_list() == [0, 1, 2, 3, 4]
    with pytest.raises(TypeError):
        farmem.Array.from_numpy(shared_rt, np.arange(5, dtype=np.int64), dtype="i8")
    with pytest.raises(TypeError):
        farmem.Vector.from_numpy(shared_rt, np.ones(3), dtype="i64")
    with pytest.raises(ValueError):
        farmem.Array.from_numpy(shared_rt, np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError):
        farmem.Array.from_numpy(shared_rt, np.zeros(3, dtype=np.complex128))
    with pytest.raises(TypeError):
        farmem.Array.from_numpy(shared_rt, [1, 2, 3])


# --- Vector vs list -------------------------------------------------------------------------


def test_vector_matches_list_under_random_operations(rt: farmem.Runtime) -> None:
    rng = random.Random(SEED + 1)
    v = farmem.Vector(rt, "i64")
    oracle: list[int] = []
    big = np.arange(300_000, dtype=np.int64)  # 2.4 MiB: most of the vector is remote
    v.extend(big)
    oracle.extend(big.tolist())
    for _ in range(OPS):
        op = rng.randrange(9)
        if op == 0:
            x = rng.randrange(-(2**63), 2**63)
            v.append(x)
            oracle.append(x)
        elif op == 1 and oracle:
            assert v.pop() == oracle.pop()
        elif op == 2 and oracle:
            i = rng.randrange(max(0, len(oracle) - 50), len(oracle))
            assert v.pop(i) == oracle.pop(i)
        elif op == 3:
            xs = [rng.randrange(1000) for _ in range(rng.randrange(0, 3000))]
            v.extend(xs)
            oracle.extend(xs)
        elif op in (4, 5) and oracle:
            i = rng.randrange(-len(oracle), len(oracle))
            if op == 4:
                x = rng.randrange(1000)
                v[i] = x
                oracle[i] = x
            else:
                assert v[i] == oracle[i]
        elif op == 6:
            assert len(v) == len(oracle)
        elif op == 7 and oracle:
            x = oracle[rng.randrange(len(oracle))]
            assert x in v
        elif op == 8 and rng.random() < 0.01:
            v.clear()
            oracle.clear()
    assert len(v) == len(oracle)
    assert list(v) == oracle
    with pytest.raises(IndexError):
        farmem.Vector(rt, "u8").pop()


def test_vector_extend_failure_leaves_it_unchanged(shared_rt: farmem.Runtime) -> None:
    v = farmem.Vector(shared_rt, "u8", [1, 2])
    with pytest.raises(OverflowError):
        v.extend([3, 256])
    with pytest.raises(TypeError):
        v.extend([3, "x"])
    with pytest.raises(TypeError):
        v.extend(5)
    assert v.to_list() == [1, 2]
    a = farmem.Array(shared_rt, "u8", 2)
    assert not hasattr(a, "append")


class VectorMachine(RuleBasedStateMachine):
    """Vector against a list, driven by hypothesis."""

    runtime: farmem.Runtime | None = None

    def __init__(self) -> None:
        super().__init__()
        assert VectorMachine.runtime is not None
        self.v = farmem.Vector(VectorMachine.runtime, "i32")
        self.model: list[int] = []

    @rule(x=st.integers(-(2**31), 2**31 - 1))
    def append(self, x: int) -> None:
        self.v.append(x)
        self.model.append(x)

    @rule(xs=st.lists(st.integers(-100, 100), max_size=2000))
    def extend(self, xs: list[int]) -> None:
        self.v.extend(xs)
        self.model.extend(xs)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def pop(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(-len(self.model), len(self.model) - 1))
        assert self.v.pop(i) == self.model.pop(i)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), x=st.integers(-5, 5))
    def set(self, data: st.DataObject, x: int) -> None:
        i = data.draw(st.integers(-len(self.model), len(self.model) - 1))
        self.v[i] = x
        self.model[i] = x

    @rule(lo=st.integers(-3000, 3000), hi=st.integers(-3000, 3000), step=st.sampled_from([1, 2, -1]))
    def read_slice(self, lo: int, hi: int, step: int) -> None:
        assert self.v[lo:hi:step].tolist() == self.model[lo:hi:step]

    @invariant()
    def same_length(self) -> None:
        assert len(self.v) == len(self.model)


@pytest.fixture(scope="module")
def machine_runtime() -> Iterator[farmem.Runtime]:
    rt = farmem.Runtime(local_memory=LOCAL_MEMORY, far_memory=FAR_MEMORY, workers=1)
    VectorMachine.runtime = rt
    yield rt
    VectorMachine.runtime = None
    rt.close()


def test_vector_state_machine(machine_runtime: farmem.Runtime) -> None:
    run_state_machine_as_test(
        VectorMachine,
        settings=settings(
            max_examples=200 if STRESS else 25,
            stateful_step_count=40,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )


# --- List vs list/deque ---------------------------------------------------------------------


def test_list_matches_python_under_random_operations(rt: farmem.Runtime) -> None:
    rng = random.Random(SEED + 2)
    lst = farmem.List(rt, "u32", range(200_000))  # 800 KiB to start, growing past local memory
    oracle = list(range(200_000))
    for _ in range(OPS):
        op = rng.randrange(11)
        x = rng.randrange(2**32)
        if op == 0:
            lst.append(x)
            oracle.append(x)
        elif op == 1:
            lst.appendleft(x)
            oracle.insert(0, x)
        elif op == 2 and oracle:
            assert lst.pop() == oracle.pop()
        elif op == 3 and oracle:
            assert lst.popleft() == oracle.pop(0)
        elif op == 4:
            i = rng.randrange(-len(oracle) - 3, len(oracle) + 3)
            lst.insert(i, x)
            oracle.insert(i, x)
        elif op == 5 and oracle:
            i = rng.randrange(-len(oracle), len(oracle))
            del lst[i]
            del oracle[i]
        elif op == 6 and oracle:
            i = rng.randrange(-len(oracle), len(oracle))
            lst[i] = x
            oracle[i] = x
        elif op == 7 and oracle:
            i = rng.randrange(-len(oracle), len(oracle))
            assert lst[i] == oracle[i]
        elif op == 8 and oracle:
            i = rng.randrange(len(oracle))
            assert lst.pop(i) == oracle.pop(i)
        elif op == 9:
            xs = [rng.randrange(2**32) for _ in range(rng.randrange(0, 2000))]
            lst.extend(xs)
            oracle.extend(xs)
        elif op == 10:
            assert len(lst) == len(oracle)
    assert list(lst) == oracle
    assert lst.to_list() == oracle
    np.testing.assert_array_equal(lst.to_numpy(), np.array(oracle, dtype=np.uint32))
    assert lst[10:20].tolist() == oracle[10:20]
    assert oracle[-1] in lst and 2**33 not in lst
    rt_metrics = rt.metrics()
    assert rt_metrics["bytes_written_back"] > 0


def test_list_errors(shared_rt: farmem.Runtime) -> None:
    lst = farmem.List(shared_rt, "i16")
    with pytest.raises(IndexError):
        lst.pop()
    with pytest.raises(IndexError):
        lst.popleft()
    with pytest.raises(IndexError):
        lst[0]
    with pytest.raises(IndexError):
        del lst[0]
    lst.extend([1, 2, 3])
    with pytest.raises(TypeError):
        lst[0:1] = [5]
    with pytest.raises(OverflowError):
        lst.append(40_000)
    with pytest.raises(TypeError):
        lst.insert(0, "x")
    assert lst.to_list() == [1, 2, 3]
    lst.clear()
    assert len(lst) == 0 and list(lst) == []


# --- Stack and Queue ------------------------------------------------------------------------


def run_ends(
    rng: random.Random,
    push: Callable[[int], None],
    pop: Callable[[], Any],
    peek: Callable[[], Any],
    size: Callable[[], int],
    oracle_push: Callable[[int], None],
    oracle_pop: Callable[[], Any],
    oracle_peek: Callable[[], Any],
    oracle: Any,
) -> None:
    for _ in range(OPS * 3):
        op = rng.randrange(4)
        if op <= 1:
            x = rng.randrange(-(2**31), 2**31)
            push(x)
            oracle_push(x)
        elif op == 2:
            if oracle:
                assert pop() == oracle_pop()
            else:
                with pytest.raises(IndexError):
                    pop()
        else:
            assert peek() == (oracle_peek() if oracle else None)
            assert size() == len(oracle)


def test_stack_matches_list(rt: farmem.Runtime) -> None:
    s = farmem.Stack(rt, "i32", np.arange(400_000, dtype=np.int32))  # 1.6 MiB
    oracle = list(range(400_000))
    run_ends(
        random.Random(SEED + 3), s.push, s.pop, s.peek, lambda: len(s),
        oracle.append, oracle.pop, lambda: oracle[-1], oracle,
    )
    while oracle:
        assert s.pop() == oracle.pop()
    assert len(s) == 0 and s.peek() is None
    with pytest.raises(TypeError):
        iter(s)  # type: ignore[call-overload]


def test_queue_matches_deque(rt: farmem.Runtime) -> None:
    q = farmem.Queue(rt, "i64")
    q.extend(np.arange(300_000, dtype=np.int64))  # 2.4 MiB
    oracle: collections.deque[int] = collections.deque(range(300_000))
    run_ends(
        random.Random(SEED + 4), q.push, q.pop, q.peek, lambda: len(q),
        oracle.append, oracle.popleft, lambda: oracle[0], oracle,
    )
    assert len(q) == len(oracle)
    for _ in range(1000):
        assert q.pop() == oracle.popleft()
    q.clear()
    assert len(q) == 0
    with pytest.raises(IndexError):
        q.pop()


# --- HashMap vs dict ------------------------------------------------------------------------


def random_value(rng: random.Random, kind: str) -> Any:
    if kind == "int":
        return rng.randrange(-(2**63), 2**63)
    if kind == "float":
        return rng.uniform(-1e9, 1e9)
    return rng.randbytes(rng.randrange(0, 40))


@pytest.mark.parametrize("key, value", [("int", "int"), ("int", "float"), ("bytes", "bytes"), ("bytes", "int")])
def test_hash_map_matches_dict_under_random_operations(rt: farmem.Runtime, key: str, value: str) -> None:
    rng = random.Random(SEED + 5)
    m = farmem.HashMap(rt, key=key, value=value, cache_size="16KiB")
    oracle: dict[Any, Any] = {}
    keys = [rng.randrange(-(2**40), 2**40) if key == "int" else rng.randbytes(rng.randrange(1, 24)) for _ in range(3000)]
    for _ in range(OPS):
        op = rng.randrange(8)
        k = rng.choice(keys)
        if op <= 1:
            v = random_value(rng, value)
            m[k] = v
            oracle[k] = v
        elif op == 2:
            assert m.get(k) == oracle.get(k)
        elif op == 3:
            assert (k in m) == (k in oracle)
        elif op == 4:
            if k in oracle:
                del m[k]
                del oracle[k]
            else:
                with pytest.raises(KeyError):
                    del m[k]
        elif op == 5:
            assert m.pop(k, "missing") == oracle.pop(k, "missing")
        elif op == 6:
            if k in oracle:
                assert m[k] == oracle[k]
            else:
                with pytest.raises(KeyError):
                    m[k]
        else:
            assert len(m) == len(oracle)
    assert len(m) == len(oracle)
    for k, v in oracle.items():
        assert m[k] == v
    stats = m.cache_stats()
    assert stats["bytes"] <= 16 << 10


def test_hash_map_types_and_dict_methods(shared_rt: farmem.Runtime) -> None:
    m = farmem.HashMap(shared_rt)
    assert (m.key_type, m.value_type) == ("int", "int")
    m[True] = 5
    assert m[1] == 5  # True is the key 1, as in a dict
    with pytest.raises(TypeError):
        m["a"] = 1
    with pytest.raises(TypeError):
        m[1.5] = 1
    with pytest.raises(TypeError):
        m[2] = 1.5
    with pytest.raises(OverflowError):
        m[2**64] = 1
    assert "a" not in m and 1.5 not in m
    with pytest.raises(KeyError):
        m.pop(99)
    assert m.setdefault(7, 70) == 70 and m.setdefault(7, 0) == 70
    m.update({8: 80})
    m.update([(9, 90)])
    assert (m[8], m[9], len(m)) == (80, 90, 4)
    for call in (lambda: iter(m), m.keys, m.values, m.items):
        with pytest.raises(TypeError, match="enumerate"):
            call()
    b = farmem.HashMap(shared_rt, key="bytes", value="bytes")
    b[bytearray(b"k")] = memoryview(b"v")
    assert b[b"k"] == b"v"
    with pytest.raises(TypeError):
        b["k"] = b"v"
    for bad in ({"key": "str"}, {"value": "list"}, {"key": "float"}):
        with pytest.raises(ValueError):
            farmem.HashMap(shared_rt, **bad)  # type: ignore[arg-type]


# --- threads --------------------------------------------------------------------------------


def test_threads_share_a_container_without_deadlock(rt: farmem.Runtime) -> None:
    """Bulk copies release the GIL while holding the container's lock; a second thread that
    wants the lock must wait without the GIL, or this test hangs (pytest-timeout fails it)."""
    v = farmem.Vector(rt, "i64")
    block = np.arange(50_000, dtype=np.int64)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(8):
                v.extend(block)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def reader() -> None:
        try:
            for _ in range(40):
                n = len(v)
                if n:
                    assert v[n - 1] == 49_999
                    v.to_numpy()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(v) == 8 * 50_000
    np.testing.assert_array_equal(v.to_numpy(), np.tile(block, 8))
