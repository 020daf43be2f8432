"Seeded faults in a CSV: every bad cell is reported where it is, and good + quarantined rows are exactly the input."

import numpy as np
import pandas as pd
import pytest

from aiworkbench.contracts import Contract
from aiworkbench.datasets import read_table

CONTRACT = Contract.model_validate(
    {
        "name": "faults",
        "columns": {
            "id": {"dtype": "int", "unique": True, "min": 0},
            "count": {"dtype": "int", "min": 0, "max": 100},
            "ratio": {"dtype": "float", "min": 0.0, "max": 1.0},
            "maybe": {"dtype": "float", "nullable": True},
            "colour": {"dtype": "str", "allowed": ["red", "green", "blue"]},
            "flag": {"dtype": "bool"},
            "seen": {"dtype": "datetime", "min": "2020-01-01"},
            "born": {"dtype": "datetime", "min": "1900-01-01", "max": "2030-12-31"},  # ISO dates, no time
        },
    }
)

# how each fault is written into a cell, per column; every one of them must be caught
FAULTS = {
    "count": ["abc", "", "101", "-1", "2.5"],
    "ratio": ["x", "", "1.5", "-0.1"],
    "colour": ["purple", ""],
    "flag": ["maybe", ""],
    "seen": ["yesterday", "", "2019-12-31"],
    "born": ["not a date", "2021-02-30", "", "1899-12-31", "2031-01-01"],
}


def clean(n: int, rng) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "count": rng.integers(0, 101, n),
            "ratio": rng.random(n).round(4),
            "maybe": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n).round(3)),
            "colour": rng.choice(["red", "green", "blue"], n),
            "flag": rng.random(n) < 0.5,
            "seen": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D"),
            "born": (pd.Timestamp("1900-01-01") + pd.to_timedelta(rng.integers(0, 47_000, n), unit="D")).date,
        }
    )


@pytest.mark.parametrize("seed", range(5))
def test_every_seeded_fault_is_reported_and_nothing_is_lost(tmp_path, seed):
    rng = np.random.default_rng(seed)
    n = 3000
    df = clean(n, rng).astype(object)
    rows = rng.choice(n, size=60, replace=False)
    seeded = set()
    for row in rows:
        column = rng.choice(list(FAULTS))
        df.loc[row, column] = rng.choice(FAULTS[column])
        seeded.add((int(row), str(column)))
    duplicate_of, duplicate_row = int(rows[0]), int(rng.choice(np.setdiff1d(np.arange(n), rows)))
    df.loc[duplicate_row, "id"] = df.loc[duplicate_of, "id"]  # a repeated id: the later row is the bad one
    first, later = sorted([duplicate_of, duplicate_row])
    seeded.add((later, "id"))
    path = tmp_path / "faults.csv"
    df.to_csv(path, index=False)

    table = read_table(path, CONTRACT)
    good, bad = result = CONTRACT.split(table, quarantine_dir=tmp_path / "q", source=str(path))
    failures = result.report.failures
    assert set(zip(failures["row"].astype(int), failures["column"], strict=True)) == seeded
    assert len(good) + len(bad) == n
    assert sorted(bad.index) == sorted({r for r, _ in seeded})
    assert CONTRACT.validate(good).ok
    assert pd.read_parquet(result.report.quarantine["rows"]).shape[0] == len(bad)
    # the quarantined rows are the input rows, untouched
    pd.testing.assert_frame_equal(bad, table.loc[bad.index])
