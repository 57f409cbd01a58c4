"""farmem.DataFrame: the nine taxi steps against pandas, numpy/pandas export, bad arguments.

pandas is the oracle: every step's result is compared with the same step computed by pandas
(``examples/taxi_pandas.py``) from ``pandas.read_csv`` of the same generated file, and every
derived column with numpy's own computation of it. The frame lives in a runtime whose local
memory is a fraction of the data, so most of it is remote while the steps run.
"""

from __future__ import annotations

import concurrent.futures
import errno
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pandas as pd
import pytest

import farmem

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import taxi_pandas  # noqa: E402

ROWS = 30_000
SEED = 7
LOCAL = "1MiB"
# Bytes per row of the taxi schema's columns (3 x 8-byte ints and timestamps, 12 floats, 4
# one-byte columns) plus the 19 bytes per row the steps add.
BYTES_PER_ROW = 3 * 8 + 12 * 8 + 4 + 19
REL = 1e-12


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("taxi") / "taxi.csv"
    written = farmem.generate_taxi_csv(path, ROWS, seed=SEED)
    assert written == path.stat().st_size
    return path


@pytest.fixture(scope="module")
def oracle_frame(csv: Path) -> pd.DataFrame:
    return taxi_pandas.read_taxi_csv(csv)


@pytest.fixture(scope="module")
def rt(shared_rt: farmem.Runtime) -> farmem.Runtime:
    """The module's small runtime (conftest: 1 MiB of local memory, far below the frame)."""
    return shared_rt


@pytest.fixture
def df(csv: Path, rt: farmem.Runtime) -> farmem.DataFrame:
    return farmem.DataFrame.read_csv(csv, runtime=rt)


@pytest.fixture(scope="module")
def steps(csv: Path, rt: farmem.Runtime) -> Dict[str, Any]:
    """Runs the nine steps one by one on one far-memory frame, in order."""
    metrics_before = rt.metrics()
    frame = farmem.DataFrame.read_csv(csv, runtime=rt)
    before = list(frame.columns)
    out: Dict[str, Any] = {"columns_before": before}
    out["vendor_summary"] = frame.vendor_summary()
    out["passengers_vendor1"] = frame.passenger_histogram(1)
    out["passengers_vendor2"] = frame.passenger_histogram(2)
    out["trip_duration"] = frame.trip_duration()
    out["columns_after_4"] = list(frame.columns)
    out["store_and_forward"] = frame.store_and_forward()
    out["long_trips"] = frame.long_trips()
    out["columns_after_6"] = list(frame.columns)
    out["pickup_time_parts"] = frame.pickup_time_parts()
    out["columns_after_7"] = list(frame.columns)
    out["median_by_day"] = frame.median_duration_by("pickup_day")
    out["median_by_month"] = frame.median_duration_by("pickup_month")
    out["derived"] = {
        name: frame[name].to_numpy()
        for name in ("duration", "haversine_distance", "pickup_hour", "pickup_day", "pickup_month")
    }
    metrics_after = rt.metrics()
    # What this frame's load and steps cost (the runtime is shared with other tests).
    out["traffic"] = {
        k: metrics_after[k] - metrics_before[k]
        for k in ("bytes_written_back", "bytes_fetched", "misses")
    }
    return out


def same(ours: Any, theirs: Any) -> None:
    diffs = taxi_pandas.differences(ours, theirs, rel=REL)
    assert not diffs, "\n".join(diffs)


# ---- the nine steps, each against pandas -------------------------------------------------------


def test_most_of_the_frame_is_remote_while_the_steps_run(
    steps: Dict[str, Any], rt: farmem.Runtime
) -> None:
    assert ROWS * BYTES_PER_ROW > 3 * rt.local_memory, "the data must be several times local memory"
    m = steps["traffic"]
    # The columns did not fit: the evacuator wrote them out and the scans fetched them back.
    assert m["bytes_written_back"] > ROWS * BYTES_PER_ROW // 2
    assert m["bytes_fetched"] > ROWS * BYTES_PER_ROW // 2
    assert m["misses"] > 0


def test_step1_vendor_summary(steps: Dict[str, Any], oracle_frame: pd.DataFrame) -> None:
    same(steps["vendor_summary"], taxi_pandas.vendor_summary(oracle_frame))
    assert steps["vendor_summary"]["unique"] == [1, 2]


@pytest.mark.parametrize("vendor", [1, 2])
def test_steps2_3_passenger_histograms(
    steps: Dict[str, Any], oracle_frame: pd.DataFrame, vendor: int
) -> None:
    ours = steps[f"passengers_vendor{vendor}"]
    same(ours, taxi_pandas.passenger_histogram(oracle_frame, vendor))
    assert list(ours) == sorted(ours)
    assert sum(ours.values()) == int((oracle_frame["VendorID"] == vendor).sum())


def test_step4_trip_duration(steps: Dict[str, Any], oracle_frame: pd.DataFrame) -> None:
    ours = steps["trip_duration"]
    same(ours, taxi_pandas.trip_duration(oracle_frame))
    assert isinstance(ours["max"], int) and isinstance(ours["mean"], float)
    # The generator makes a few dropoffs before their pickup.
    assert ours["min"] < 0 < ours["max"]


def test_step5_store_and_forward(steps: Dict[str, Any], oracle_frame: pd.DataFrame) -> None:
    same(steps["store_and_forward"], taxi_pandas.store_and_forward(oracle_frame))
    assert 0 < steps["store_and_forward"]["n_rows"] < ROWS


def test_step6_long_trips(steps: Dict[str, Any], oracle_frame: pd.DataFrame) -> None:
    theirs = taxi_pandas.long_trips(oracle_frame)
    assert steps["long_trips"] == theirs
    assert theirs > 0, "the generated file must hold trips over 100 km"


def test_step7_pickup_time_parts(
    steps: Dict[str, Any], oracle_frame: pd.DataFrame, csv: Path
) -> None:
    ours = steps["pickup_time_parts"]
    same(ours, taxi_pandas.pickup_time_parts(oracle_frame))
    assert set(ours["days"]) == set(range(7))
    # The first rows' pickups against the raw CSV text, independently of the oracle's strftime.
    raw = pd.read_csv(csv, nrows=10)
    assert [r[0] for r in ours["first_rows"]] == list(raw["tpep_pickup_datetime"])


@pytest.mark.parametrize(
    "key, result", [("pickup_day", "median_by_day"), ("pickup_month", "median_by_month")]
)
def test_steps8_9_median_duration(
    steps: Dict[str, Any], oracle_frame: pd.DataFrame, key: str, result: str
) -> None:
    ours = steps[result]
    same(ours, taxi_pandas.median_duration_by(oracle_frame, key))
    assert all(isinstance(v, float) for v in ours.values())


def test_derived_columns_equal_numpy_and_appear_after_their_step(
    steps: Dict[str, Any], oracle_frame: pd.DataFrame
) -> None:
    before = steps["columns_before"]
    assert before == list(oracle_frame.columns)
    assert steps["columns_after_4"] == before + ["duration"]
    assert steps["columns_after_6"] == before + ["duration", "haversine_distance"]
    assert steps["columns_after_7"] == before + [
        "duration",
        "haversine_distance",
        "pickup_hour",
        "pickup_day",
        "pickup_month",
    ]
    theirs = taxi_pandas.derived_columns(oracle_frame)
    for name, ours in steps["derived"].items():
        assert ours.dtype == theirs[name].dtype, name
        if ours.dtype.kind == "f":
            # sin/cos/asin of libm and numpy may differ in the last bit.
            np.testing.assert_allclose(ours, theirs[name], rtol=1e-12, atol=1e-9, err_msg=name)
        else:
            np.testing.assert_array_equal(ours, theirs[name], err_msg=name)


def test_run_all_equals_pandas_and_the_single_steps(
    csv: Path,
    rt: farmem.Runtime,
    oracle_frame: pd.DataFrame,
    steps: Dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    frame = farmem.DataFrame.read_csv(csv, runtime=rt)
    everything = frame.run_all(echo=True)
    timings = everything["timings"]
    results = {k: v for k, v in everything.items() if k != "timings"}
    assert list(timings) == [
        "1 vendor ids",
        "2 passengers, vendor 1",
        "3 passengers, vendor 2",
        "4 trip duration",
        "5 store and forward",
        "6 haversine distance",
        "7 pickup hour/day/month",
        "8 median duration by day",
        "9 median duration by month",
    ]
    assert all(isinstance(t, float) and t >= 0 for t in timings.values())
    same(results, taxi_pandas.run_all(oracle_frame))
    same(results, {k: steps[k] for k in results})
    printed = capsys.readouterr().out
    assert "== 1 vendor ids" in printed and "median duration by pickup_month" in printed


def test_steps_8_and_9_need_4_and_7_first(df: farmem.DataFrame) -> None:
    with pytest.raises(farmem.NotFound, match="duration"):
        df.median_duration_by("pickup_day")
    df.trip_duration()
    with pytest.raises(farmem.NotFound, match="pickup_day"):
        df.median_duration_by("pickup_day")
    with pytest.raises(farmem.NotFound, match="pickup_month"):
        df.median_duration_by("pickup_month")
    df.pickup_time_parts()
    assert set(df.median_duration_by("pickup_month")) == set(range(1, 7))


def test_rerunning_a_step_replaces_its_column(df: farmem.DataFrame) -> None:
    first = df.trip_duration()
    assert df.trip_duration() == first
    assert df.columns.count("duration") == 1


# ---- columns, numpy and pandas ------------------------------------------------------------------


def test_shape_columns_dtypes(df: farmem.DataFrame, oracle_frame: pd.DataFrame) -> None:
    assert len(df) == ROWS == len(oracle_frame)
    assert df.shape == (ROWS, 19)
    assert df.columns == list(oracle_frame.columns)
    assert list(df) == df.columns
    assert "fare_amount" in df and "nope" not in df and 3 not in df
    dt = df.dtypes
    assert dt["VendorID"] == "int64"
    assert dt["tpep_pickup_datetime"] == "datetime64[s]"
    assert dt["passenger_count"] == "uint8"
    assert dt["fare_amount"] == "float64"
    assert dt["store_and_fwd_flag"] == "category"
    assert df.bad_rows == 0 and df.first_bad_row is None
    assert "30000 rows x 19 columns" in repr(df)


def test_to_pandas_equals_pandas_read_csv(df: farmem.DataFrame, oracle_frame: pd.DataFrame) -> None:
    ours = df.to_pandas()
    assert list(ours.columns) == list(oracle_frame.columns)
    for name in oracle_frame.columns:
        want = oracle_frame[name]
        got = ours[name]
        if df.dtypes[name] == "uint8":
            # pandas reads small counts as int64; farmem stores them as uint8.
            assert got.dtype == np.uint8
            want = want.astype(np.uint8)
        pd.testing.assert_series_equal(got, want, check_exact=True, obj=name)


def test_column_to_numpy_and_the_array_protocol(
    df: farmem.DataFrame, oracle_frame: pd.DataFrame
) -> None:
    col = df["fare_amount"]
    assert col.name == "fare_amount" and col.dtype == "float64" and len(col) == ROWS
    arr = col.to_numpy()
    assert arr.dtype == np.float64
    np.testing.assert_array_equal(arr, oracle_frame["fare_amount"].to_numpy())
    np.testing.assert_array_equal(np.asarray(col), arr)
    assert np.asarray(col, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="copy"):
        col.__array__(copy=False)
    ts = df["tpep_dropoff_datetime"].to_numpy()
    assert ts.dtype == np.dtype("datetime64[s]")
    np.testing.assert_array_equal(ts, oracle_frame["tpep_dropoff_datetime"].to_numpy())
    flags = df["store_and_fwd_flag"].to_numpy()
    assert flags.dtype == object
    assert list(flags) == list(oracle_frame["store_and_fwd_flag"].astype(str))
    assert "fare_amount" in repr(col) and "float64" in repr(col)


@pytest.mark.parametrize("name", ["VendorID", "passenger_count", "trip_distance", "tip_amount"])
def test_column_aggregates_equal_numpy(
    df: farmem.DataFrame, oracle_frame: pd.DataFrame, name: str
) -> None:
    col = df[name]
    want = oracle_frame[name].to_numpy()
    assert col.count() == len(want)
    if want.dtype.kind == "f":
        # farmem adds in row order; numpy's pairwise sum rounds differently.
        assert col.sum() == pytest.approx(math.fsum(want), rel=1e-12)
        assert isinstance(col.sum(), float)
    else:
        assert col.sum() == int(want.sum()) and isinstance(col.sum(), int)
    assert col.mean() == pytest.approx(want.mean(), rel=1e-12)
    assert col.min() == want.min() and col.max() == want.max()
    np.testing.assert_array_equal(col.unique(), np.unique(want))


def test_timestamp_and_categorical_aggregates(
    df: farmem.DataFrame, oracle_frame: pd.DataFrame
) -> None:
    pickup = df["tpep_pickup_datetime"]
    want = oracle_frame["tpep_pickup_datetime"].to_numpy()
    assert pickup.min() == want.min() and isinstance(pickup.min(), np.datetime64)
    assert pickup.max() == want.max()
    assert len(pickup.unique()) == len(np.unique(want))
    flag = df["store_and_fwd_flag"]
    assert list(flag.unique()) == ["N", "Y"]
    assert flag.count() == ROWS
    for op in (pickup.sum, pickup.mean, flag.sum, flag.mean, flag.min, flag.max):
        with pytest.raises(TypeError, match="not defined"):
            op()


def test_a_column_follows_its_frame_when_a_step_replaces_it(df: farmem.DataFrame) -> None:
    df.trip_duration()
    col = df["duration"]
    before = col.to_numpy()
    df.trip_duration()
    np.testing.assert_array_equal(col.to_numpy(), before)


def test_threads_share_a_frame(df: farmem.DataFrame) -> None:
    # Steps release the GIL and queue on the frame's lock: no deadlock, same answers.
    want = df.vendor_summary()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: df.vendor_summary(), range(8)))
        sums = list(pool.map(lambda _: df["total_amount"].sum(), range(8)))
    assert all(g == want for g in got)
    assert len(set(sums)) == 1


def test_an_empty_file_gives_an_empty_frame(tmp_path: Path, rt: farmem.Runtime) -> None:
    path = tmp_path / "empty.csv"
    farmem.generate_taxi_csv(path, 0)
    frame = farmem.DataFrame.read_csv(path, runtime=rt)
    assert len(frame) == 0 and frame.shape == (0, 19)
    assert frame.trip_duration() == {"max": None, "min": None, "mean": None}
    assert frame["fare_amount"].min() is None and frame["fare_amount"].mean() is None
    assert frame["fare_amount"].to_numpy().shape == (0,)
    assert frame.vendor_summary() == {"count": 0, "unique": []}
    assert frame.store_and_forward()["n_share"] == 0.0
    assert len(frame.to_pandas()) == 0


def test_a_custom_schema_dict(tmp_path: Path, rt: farmem.Runtime) -> None:
    path = tmp_path / "small.csv"
    path.write_text(
        "id,price,when,kind\n3,1.5,2020-02-29 23:59:59,b\n-4,2.25,1999-12-31 00:00:00,a\n"
    )
    frame = farmem.DataFrame.read_csv(
        path,
        runtime=rt,
        schema={
            "id": "int64",
            "price": np.dtype("float64"),
            "when": "datetime64[s]",
            "kind": "category",
        },
    )
    assert frame.dtypes == {
        "id": "int64",
        "price": "float64",
        "when": "datetime64[s]",
        "kind": "category",
    }
    ours = frame.to_pandas()
    theirs = pd.read_csv(path, parse_dates=["when"])
    theirs["when"] = theirs["when"].astype("datetime64[s]")
    theirs["kind"] = theirs["kind"].astype("category")
    pd.testing.assert_frame_equal(ours, theirs)
    # The taxi steps name the column they miss.
    with pytest.raises(farmem.NotFound, match="VendorID"):
        frame.vendor_summary()


# ---- bad arguments and misuse --------------------------------------------------------------------


def test_a_missing_file_is_an_os_error(tmp_path: Path, rt: farmem.Runtime) -> None:
    for path in (tmp_path / "missing.csv", tmp_path):
        with pytest.raises(farmem.IoError) as info:
            farmem.DataFrame.read_csv(path, runtime=rt)
        assert isinstance(info.value, OSError) and isinstance(info.value, farmem.FarmemError)
        assert info.value.errno == errno.ENOENT
        assert info.value.filename == str(path)


def write_bad_csv(csv: Path, tmp_path: Path, line: int, field: int, value: str) -> Path:
    lines = csv.read_text().splitlines(keepends=True)[:20]
    cells = lines[line - 1].split(",")
    cells[field] = value
    lines[line - 1] = ",".join(cells)
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(lines))
    return bad


def test_a_malformed_row_is_a_parse_error_naming_its_line(
    csv: Path, tmp_path: Path, rt: farmem.Runtime
) -> None:
    bad = write_bad_csv(csv, tmp_path, line=7, field=3, value="seven")
    with pytest.raises(farmem.ParseError, match=r"line 7\b.*passenger_count.*seven") as info:
        farmem.DataFrame.read_csv(bad, runtime=rt)
    assert isinstance(info.value, ValueError)
    frame = farmem.DataFrame.read_csv(bad, runtime=rt, skip_bad_rows=True)
    assert len(frame) == 18 and frame.bad_rows == 1
    assert frame.first_bad_row is not None and "line 7" in frame.first_bad_row


def test_a_file_of_another_layout_is_a_parse_error(tmp_path: Path, rt: farmem.Runtime) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(farmem.ParseError, match="header"):
        farmem.DataFrame.read_csv(path, runtime=rt)


def test_bad_arguments_raise_clear_exceptions(
    csv: Path, df: farmem.DataFrame, rt: farmem.Runtime
) -> None:
    with pytest.raises(ValueError, match="unknown schema"):
        farmem.DataFrame.read_csv(csv, runtime=rt, schema="nyc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="schema"):
        farmem.DataFrame.read_csv(csv, runtime=rt, schema=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        farmem.DataFrame.read_csv(csv, runtime=rt, schema={})
    with pytest.raises(ValueError, match='unknown dtype "int32"'):
        farmem.DataFrame.read_csv(csv, runtime=rt, schema={"VendorID": "int32"})
    with pytest.raises(TypeError):
        farmem.DataFrame.read_csv(csv, runtime="rt")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        farmem.DataFrame.read_csv(csv)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        farmem.DataFrame()  # type: ignore[call-arg]
    with pytest.raises(farmem.NotFound, match="nope") as info:
        df["nope"]
    assert isinstance(info.value, LookupError)
    with pytest.raises(TypeError, match="column name"):
        df[0]  # type: ignore[index]
    with pytest.raises(TypeError):
        df.passenger_histogram("1")  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        df.passenger_histogram(2**70)
    assert df.passenger_histogram(3) == {}
    with pytest.raises(ValueError, match="pickup_day"):
        df.median_duration_by("pickup_hour")  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        farmem.generate_taxi_csv(csv.parent / "x.csv", -1)
    with pytest.raises(farmem.IoError):
        farmem.generate_taxi_csv(csv.parent / "no" / "such" / "dir.csv", 10)


def test_a_closed_runtime_makes_frames_and_columns_closed(csv: Path) -> None:
    runtime = farmem.Runtime(local_memory=LOCAL, far_memory="64MiB")
    frame = farmem.DataFrame.read_csv(csv, runtime=runtime)
    col = frame["fare_amount"]
    assert frame.vendor_summary()["count"] == ROWS
    runtime.close()
    for call in (
        lambda: len(frame),
        frame.vendor_summary,
        frame.trip_duration,
        frame.to_pandas,
        lambda: frame.columns,
        col.to_numpy,
        col.sum,
        lambda: frame["fare_amount"],
    ):
        with pytest.raises(farmem.Closed):
            call()
    with pytest.raises(farmem.Closed):
        farmem.DataFrame.read_csv(csv, runtime=runtime)
    runtime.close()
    del frame, col


def test_closing_the_runtime_while_a_step_runs_on_another_thread(csv: Path) -> None:
    # close() waits for the running step (it holds the frame) and then frees the frame; the
    # step either finishes or reports Closed. Nothing hangs or crashes.
    runtime = farmem.Runtime(local_memory=LOCAL, far_memory="64MiB")
    frame = farmem.DataFrame.read_csv(csv, runtime=runtime)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(frame.run_all)
        runtime.close()
        try:
            results = running.result(timeout=120)
        except farmem.Closed:
            pass
        else:
            assert results["vendor_summary"]["count"] == ROWS
    with pytest.raises(farmem.Closed):
        frame.run_all()


def test_the_example_script_checks_against_pandas(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "taxi.py"),
            "--rows",
            "4000",
            "--local",
            "20",
            "--csv",
            str(tmp_path / "ex.csv"),
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "== 9 median duration by month" in out.stdout
    assert "pandas check: all nine steps match" in out.stdout
    assert (tmp_path / "ex.csv").is_file()
