"""AIFM's nine NYC-taxi steps written in plain pandas: the oracle farmem's results are checked
against (by ``taxi.py --check`` and ``tests/test_dataframe.py``).

Every function mirrors one step of ``runtime/dataframe/src/taxi.rs`` and returns the value the
matching ``farmem.DataFrame`` method returns, so results compare with ``==`` (floats with a tight
relative tolerance). Conventions that differ from pandas' defaults are spelled out where they are
applied: weekday 0 is Sunday (C's ``tm_wday``, as the Rust code groups by), timestamps are the
file's wall clock in whole seconds, and the haversine formula and Earth radius are those of
``runtime/dataframe/src/storage.rs``.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List

import numpy as np
import pandas as pd

#: Mean Earth radius in km, as ``EARTH_RADIUS_KM`` in ``runtime/dataframe/src/storage.rs``.
EARTH_RADIUS_KM = 6371.0

TIMESTAMP_COLUMNS = ("tpep_pickup_datetime", "tpep_dropoff_datetime")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def read_taxi_csv(path: "str | os.PathLike[str]") -> pd.DataFrame:
    """``pandas.read_csv`` of a taxi file, lightly converted to farmem's column types.

    Floats are parsed correctly rounded, as farmem's loader parses them (pandas < 3 needs
    ``float_precision="round_trip"`` for that); the two timestamp columns become
    ``datetime64[s]``; the ``store_and_fwd_flag`` strings become a categorical with sorted
    categories.
    """
    # pandas 3 parses floats correctly rounded by default and deprecates the option.
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    pdf = pd.read_csv(path, **exact)
    for c in TIMESTAMP_COLUMNS:
        pdf[c] = pd.to_datetime(pdf[c], format=TIMESTAMP_FORMAT).astype("datetime64[s]")
    pdf["store_and_fwd_flag"] = pdf["store_and_fwd_flag"].astype("category")
    return pdf


def _seconds(ts: pd.Series) -> np.ndarray:
    """Seconds since the epoch of a ``datetime64[s]`` series."""
    return ts.to_numpy().astype("datetime64[s]").astype(np.int64)


def _counts(s: pd.Series) -> Dict[int, int]:
    """``{value: occurrences}`` ascending by value, as farmem's histograms."""
    return {int(k): int(n) for k, n in s.value_counts().sort_index().items()}


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> np.ndarray:
    """Great-circle distance in km, term for term as ``haversine_km`` in ``storage.rs``."""
    to_rad = math.pi / 180.0
    d_lat = (lat2 - lat1) * to_rad
    d_lon = (lon2 - lon1) * to_rad
    lat1 = lat1 * to_rad
    lat2 = lat2 * to_rad
    a = np.sin(d_lat / 2.0) ** 2 + np.sin(d_lon / 2.0) ** 2 * np.cos(lat1) * np.cos(lat2)
    return EARTH_RADIUS_KM * 2.0 * np.arcsin(np.sqrt(a))


def derived_columns(pdf: pd.DataFrame) -> Dict[str, np.ndarray]:
    """The columns steps 4, 6 and 7 add: ``duration`` (s), ``haversine_distance`` (km),
    ``pickup_hour``, ``pickup_day`` (0 = Sunday) and ``pickup_month``."""
    pickup = pdf["tpep_pickup_datetime"]
    return {
        "duration": _seconds(pdf["tpep_dropoff_datetime"]) - _seconds(pickup),
        "haversine_distance": haversine_km(
            pdf["pickup_latitude"].to_numpy(),
            pdf["pickup_longitude"].to_numpy(),
            pdf["dropoff_latitude"].to_numpy(),
            pdf["dropoff_longitude"].to_numpy(),
        ),
        "pickup_hour": pickup.dt.hour.to_numpy().astype(np.uint8),
        # pandas counts Monday = 0; farmem (C's tm_wday) counts Sunday = 0.
        "pickup_day": ((pickup.dt.day_of_week + 1) % 7).to_numpy().astype(np.uint8),
        "pickup_month": pickup.dt.month.to_numpy().astype(np.uint8),
    }


def vendor_summary(pdf: pd.DataFrame) -> Dict[str, Any]:
    """Step 1."""
    v = pdf["VendorID"]
    return {"count": int(v.count()), "unique": sorted(int(x) for x in v.unique())}


def passenger_histogram(pdf: pd.DataFrame, vendor: int) -> Dict[int, int]:
    """Steps 2 and 3."""
    return _counts(pdf.loc[pdf["VendorID"] == vendor, "passenger_count"])


def trip_duration(pdf: pd.DataFrame) -> Dict[str, Any]:
    """Step 4."""
    d = pd.Series(derived_columns(pdf)["duration"])
    if d.empty:
        return {"max": None, "min": None, "mean": None}
    return {"max": int(d.max()), "min": int(d.min()), "mean": float(d.mean())}


def store_and_forward(pdf: pd.DataFrame) -> Dict[str, Any]:
    """Step 5."""
    flag = pdf["store_and_fwd_flag"].astype(str)
    rows = len(pdf)
    n_rows = int((flag == "N").sum())
    y_vendors = sorted(int(x) for x in pdf.loc[flag == "Y", "VendorID"].unique())
    return {
        "rows": rows,
        "n_rows": n_rows,
        "n_share": n_rows / rows if rows else 0.0,
        "y_vendors": y_vendors,
    }


def long_trips(pdf: pd.DataFrame) -> int:
    """Step 6."""
    return int((derived_columns(pdf)["haversine_distance"] > 100.0).sum())


def pickup_time_parts(pdf: pd.DataFrame) -> Dict[str, Any]:
    """Step 7."""
    d = derived_columns(pdf)
    parts = {k: pd.Series(d[k]) for k in ("pickup_hour", "pickup_day", "pickup_month")}
    text = pdf["tpep_pickup_datetime"].head(10).dt.strftime(TIMESTAMP_FORMAT)
    first_rows = [
        (str(t), int(h), int(w), int(m))
        for t, h, w, m in zip(
            text,
            parts["pickup_hour"].head(10),
            parts["pickup_day"].head(10),
            parts["pickup_month"].head(10),
        )
    ]
    return {
        "hours": _counts(parts["pickup_hour"]),
        "days": _counts(parts["pickup_day"]),
        "months": _counts(parts["pickup_month"]),
        "first_rows": first_rows,
    }


def median_duration_by(pdf: pd.DataFrame, by: str) -> Dict[int, float]:
    """Steps 8 (``"pickup_day"``) and 9 (``"pickup_month"``)."""
    d = derived_columns(pdf)
    medians = pd.Series(d["duration"]).groupby(d[by]).median().sort_index()
    return {int(k): float(m) for k, m in medians.items()}


def run_all(pdf: pd.DataFrame) -> Dict[str, Any]:
    """Every step, keyed as ``farmem.DataFrame.run_all`` keys them (without ``timings``)."""
    return {
        "vendor_summary": vendor_summary(pdf),
        "passengers_vendor1": passenger_histogram(pdf, 1),
        "passengers_vendor2": passenger_histogram(pdf, 2),
        "trip_duration": trip_duration(pdf),
        "store_and_forward": store_and_forward(pdf),
        "long_trips": long_trips(pdf),
        "pickup_time_parts": pickup_time_parts(pdf),
        "median_by_day": median_duration_by(pdf, "pickup_day"),
        "median_by_month": median_duration_by(pdf, "pickup_month"),
    }


def differences(ours: Any, theirs: Any, where: str = "", rel: float = 1e-12) -> List[str]:
    """Where two results differ (floats within ``rel`` relative tolerance count as equal)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out: List[str] = []
        if list(ours) != list(theirs):
            return [f"{where}: keys {list(ours)} != {list(theirs)}"]
        for k in ours:
            out += differences(ours[k], theirs[k], f"{where}[{k!r}]", rel)
        return out
    if isinstance(ours, (list, tuple)) and isinstance(theirs, (list, tuple)):
        if len(ours) != len(theirs):
            return [f"{where}: {len(ours)} items != {len(theirs)}"]
        out = []
        for i, (a, b) in enumerate(zip(ours, theirs)):
            out += differences(a, b, f"{where}[{i}]", rel)
        return out
    if isinstance(ours, float) or isinstance(theirs, float):
        if ours is None or theirs is None or not math.isclose(ours, theirs, rel_tol=rel):
            return [f"{where}: {ours!r} != {theirs!r}"]
        return []
    return [] if ours == theirs else [f"{where}: {ours!r} != {theirs!r}"]
