"""farmem.Runtime: configuration parsing, bad arguments, the context manager, closing."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import farmem
from conftest import FAR_MEMORY, LOCAL_MEMORY


def small(**kw: object) -> farmem.Runtime:
    args: dict[str, object] = {"local_memory": LOCAL_MEMORY, "far_memory": FAR_MEMORY, "workers": 1}
    args.update(kw)
    return farmem.Runtime(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, expected",
    [
        (1 << 20, 1 << 20),
        ("1MiB", 1 << 20),
        ("1mib", 1 << 20),
        ("2 MiB", 2 << 20),
        ("1.5MiB", 3 << 19),
        ("512KiB", 512 << 10),
        ("512K", 512 << 10),
        ("2M", 2 << 20),
        ("2MB", 2_000_000),
        ("1_048_576", 1 << 20),
        ("1048576B", 1 << 20),
    ],
)
def test_local_memory_sizes_parse(text: object, expected: int) -> None:
    with small(local_memory=text) as rt:
        assert rt.local_memory == expected


def test_far_memory_and_chunk_size_parse() -> None:
    with small(far_memory="1GiB", chunk_size="8KiB") as rt:
        assert rt.far_memory == 1 << 30
        assert rt.chunk_size == 8192
    with small() as rt:
        # Below 4 MiB of local memory the default chunk is 4 KiB.
        assert rt.chunk_size == 4096


@pytest.mark.parametrize(
    "kw, exc, words",
    [
        ({"local_memory": "1x"}, farmem.InvalidArgument, "unknown unit"),
        ({"local_memory": "lots"}, farmem.InvalidArgument, "not a size"),
        ({"local_memory": ""}, farmem.InvalidArgument, "not a size"),
        ({"local_memory": "1.2.3MiB"}, farmem.InvalidArgument, "not a size"),
        ({"local_memory": -5}, farmem.InvalidArgument, "negative"),
        ({"local_memory": 1000}, farmem.InvalidArgument, "below the minimum"),
        ({"local_memory": True}, TypeError, "not bool"),
        ({"local_memory": 1.5}, TypeError, "not float"),
        ({"local_memory": [1]}, TypeError, "not list"),
        ({"local_memory": 2**70}, OverflowError, "64 bits"),
        ({"far_memory": "99999999999TiB"}, OverflowError, "64 bits"),
        ({"far_memory": 0}, farmem.InvalidArgument, "far_bytes"),
        ({"chunk_size": 3000}, farmem.InvalidArgument, "power of two"),
        ({"connections": 0}, farmem.InvalidArgument, "connections"),
        ({"workers": -1}, farmem.InvalidArgument, "workers"),
        ({"evacuator_threads": 0}, farmem.InvalidArgument, "evacuator_threads"),
        ({"token": 5}, TypeError, "token"),
        ({"server": "127.0.0.1:1"}, farmem.InvalidArgument, "token"),
    ],
)
def test_bad_arguments_raise_clear_exceptions(kw: dict[str, object], exc: type, words: str) -> None:
    with pytest.raises(exc) as info:
        small(**kw)
    assert words in str(info.value)


def test_invalid_argument_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        small(local_memory="7 parsecs")


def test_a_server_that_is_not_there_is_an_error_not_a_hang() -> None:
    with pytest.raises(farmem.FarmemError) as info:
        small(server="127.0.0.1:1", token="t")
    assert isinstance(info.value, (farmem.Disconnected, farmem.IoError, farmem.Timeout))


def test_context_manager_closes_and_close_is_idempotent() -> None:
    with small() as rt:
        assert not rt.closed
        assert "open" in repr(rt)
        server = rt.server
        assert server is not None and server.startswith("127.0.0.1:")
    assert rt.closed
    assert "closed" in repr(rt)
    assert rt.server is None
    rt.close()
    rt.close()
    assert rt.closed


def test_exit_does_not_swallow_exceptions() -> None:
    with pytest.raises(KeyError):
        with small() as rt:
            raise KeyError("boom")
    assert rt.closed


def test_use_after_close_raises_closed() -> None:
    rt = small()
    a = farmem.Array(rt, "i64", 10)
    m = farmem.HashMap(rt)
    rt.close()
    for call in (
        rt.metrics,
        lambda: rt.chunk_size,
        lambda: farmem.Array(rt, "i64", 10),
        lambda: farmem.Vector(rt, "f64"),
        lambda: farmem.HashMap(rt),
        lambda: a[0],
        lambda: len(a),
        lambda: a.to_numpy(),
        lambda: m[1],
        lambda: rt.__enter__(),
    ):
        with pytest.raises(farmem.Closed):
            call()
    # Closed is also a RuntimeError, for code that does not know farmem.
    with pytest.raises(RuntimeError):
        a[0] = 1
    assert "closed" in repr(a)


def test_metrics_show_the_data_went_to_far_memory() -> None:
    with small() as rt:
        m0 = rt.metrics()
        assert set(m0) >= {"hits", "misses", "bytes_fetched", "bytes_written_back", "total_regions"}
        assert all(isinstance(v, int) for v in m0.values())
        # 4 MiB of data through a 1 MiB budget: most of it must have been written back.
        n = 512 * 1024
        a = farmem.Array.from_numpy(rt, np.arange(n, dtype=np.int64))
        assert int(a.to_numpy().sum()) == n * (n - 1) // 2
        m1 = rt.metrics()
        assert m1["bytes_written_back"] >= 2 << 20
        assert m1["bytes_fetched"] > 0


def test_a_runtime_dropped_without_close_shuts_down_cleanly() -> None:
    rt = small()
    v = farmem.Vector(rt, "u8", [1, 2, 3])
    assert v.to_list() == [1, 2, 3]
    del rt
    gc.collect()
    # The container keeps its runtime alive: it still works.
    assert v.to_list() == [1, 2, 3]
    runtime = v.runtime
    del v
    gc.collect()
    assert not runtime.closed
    runtime.close()


def test_many_runtimes_one_after_another() -> None:
    for _ in range(5):
        with small() as rt:
            farmem.Vector(rt, "i32", range(1000))
