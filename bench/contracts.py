"""Validation throughput: aiworkbench contracts vs the same checks written directly in pandera.

Runs both on one generated table (numeric and categorical columns, a few seeded faults) in one process, the
median of `--repeat` runs each, and prints rows/s and the ratios to plain pandera last.

    python bench/contracts.py                 # 1,000,000 rows x 20 columns
    python bench/contracts.py --rows 20000    # a quick look
"""

import argparse
import statistics
import time

import numpy as np
import pandas as pd
import pandera.pandas as pa

from aiworkbench.contracts import Contract


def make_table(rows: int, cols: int, bad_fraction: float, seed: int = 0) -> tuple[pd.DataFrame, Contract, int]:
    "A table of float, int and text columns, its contract, and how many rows carry a seeded fault."
    rng = np.random.default_rng(seed)
    data, columns = {}, {}
    n_cat = max(1, cols // 5)
    n_int = max(1, cols // 5)
    for i in range(cols - n_cat - n_int):
        data[f"f{i}"] = rng.normal(0, 1, rows)
        columns[f"f{i}"] = {"dtype": "float", "min": -10.0, "max": 10.0, "nullable": i % 4 == 0}
    for i in range(n_int):
        data[f"i{i}"] = rng.integers(0, 1000, rows)
        columns[f"i{i}"] = {"dtype": "int", "min": 0, "max": 999}
    levels = ["red", "green", "blue", "cyan", "magenta", "yellow", "black", "white"]
    for i in range(n_cat):
        data[f"c{i}"] = pd.Series(rng.choice(levels, rows), dtype="str")
        columns[f"c{i}"] = {"dtype": "str", "allowed": levels}
    df = pd.DataFrame(data)
    bad = rng.choice(rows, size=int(rows * bad_fraction), replace=False)
    df.loc[bad, "f1"] = 99.0  # out of range
    return df, Contract.model_validate({"name": "bench", "columns": columns}), len(bad)


def pandera_reference(contract: Contract) -> pa.DataFrameSchema:
    "The same checks as `contract`, written by hand in pandera."
    dtypes = {"float": "float64", "int": "int64", "str": str}
    columns = {}
    for name, spec in contract.columns.items():
        checks = []
        if spec.min is not None:
            checks.append(pa.Check.ge(spec.min))
        if spec.max is not None:
            checks.append(pa.Check.le(spec.max))
        if spec.allowed is not None:
            checks.append(pa.Check.isin(spec.allowed))
        columns[name] = pa.Column(dtypes[spec.dtype], checks=checks, nullable=spec.nullable)
    return pa.DataFrameSchema(columns, strict=True)


def run_pandera(schema: pa.DataFrameSchema, df: pd.DataFrame) -> int:
    "Validate lazily and count the bad rows, which is what a report needs at the least."
    try:
        schema.validate(df, lazy=True)
        return 0
    except pa.errors.SchemaErrors as e:
        return e.failure_cases["index"].dropna().nunique()


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--bad-fraction", type=float, default=0.001)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    df, contract, n_bad = make_table(args.rows, args.cols, args.bad_fraction)
    schema = pandera_reference(contract)
    contract.validate(df.head(1000))  # build the cached schema once, as a long-lived process would
    print(f"{args.rows:,} rows x {args.cols} columns, {n_bad:,} rows with a seeded fault, median of {args.repeat}")

    results = {}
    for name, fn in [
        ("pandera (reference)", lambda: run_pandera(schema, df)),
        ("aiworkbench validate", lambda: contract.validate(df).n_bad),
        ("aiworkbench split", lambda: len(contract.split(df).bad)),
    ]:
        seconds, bad_found = timed(fn, args.repeat)
        assert bad_found == n_bad, f"{name} found {bad_found} bad rows, expected {n_bad}"
        results[name] = seconds

    ref = results["pandera (reference)"]
    print(f"{'method':<22} {'seconds':>9} {'rows/s':>14} {'ratio':>7}")
    for name, seconds in results.items():
        print(f"{name:<22} {seconds:>9.3f} {args.rows / seconds:>14,.0f} {seconds / ref:>7.2f}")
    print(
        f"ratio validate/pandera: {results['aiworkbench validate'] / ref:.2f}  "
        f"split/pandera: {results['aiworkbench split'] / ref:.2f}"
    )


if __name__ == "__main__":
    main()
