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


def test_servers_lists_the_embedded_server_alone() -> None:
    with small() as rt:
        assert rt.servers == [rt.server]
    assert rt.servers == []


@pytest.mark.parametrize(
    "kw, exc, words",
    [
        ({"server": "127.0.0.1:1", "servers": ["127.0.0.1:2"]}, TypeError, "not both"),
        ({"servers": "127.0.0.1:1"}, TypeError, "list of 'host:port' strings, not str"),
        ({"servers": [1, 2]}, TypeError, "list of 'host:port' strings"),
        ({"servers": ["127.0.0.1:1", "127.0.0.1:2"]}, farmem.InvalidArgument, "token"),
        ({"servers": ["127.0.0.1:1", ""], "token": "t"}, farmem.InvalidArgument, "empty address"),
    ],
)
def test_bad_servers_raise_clear_exceptions(kw: dict[str, object], exc: type, words: str) -> None:
    with pytest.raises(exc) as info:
        small(**kw)
    assert words in str(info.value)


def test_containers_spread_over_several_servers() -> None:
    # Two runtimes' embedded servers, started with a token we know, serve a third runtime.
    token = "test-multi-server"
    first, second = small(token=token), small(token=token)
    addrs = [first.server, second.server]
    assert all(isinstance(a, str) for a in addrs)
    rt = farmem.Runtime(local_memory=LOCAL_MEMORY, servers=addrs, token=token, workers=1)
    try:
        assert rt.servers == addrs and rt.server is None
        assert "servers=" in repr(rt)
        # Six arrays of 1 MiB and two hash maps through a 1 MiB budget: most data is remote.
        n = 128 * 1024
        models = [np.arange(n, dtype=np.int64) * (k + 1) for k in range(6)]
        arrays = [farmem.Array.from_numpy(rt, m) for m in models]
        maps = [farmem.HashMap(rt) for _ in range(2)]
        dicts: list[dict[int, int]] = [{}, {}]
        for i in range(2000):
            maps[i % 2][i * 7] = i
            dicts[i % 2][i * 7] = i
        for a, m in zip(arrays, models):
            assert np.array_equal(a.to_numpy(), m)
        for hm, d in zip(maps, dicts):
            assert len(hm) == len(d) and all(hm[k] == v for k, v in d.items())
        assert rt.metrics()["bytes_written_back"] >= 4 << 20

        # Each container lives on one server: stopping the first server fails the containers
        # placed there with Disconnected and leaves the others whole.
        first.close()
        alive, lost = 0, 0
        for a, m in zip(arrays, models):
            try:
                got = a.to_numpy()
            except farmem.Disconnected:
                lost += 1
            else:
                assert np.array_equal(got, m)
                alive += 1
        assert alive > 0 and lost > 0, (alive, lost)
    finally:
        rt.close()
        first.close()
        second.close()
