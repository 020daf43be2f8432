"""Data for the lifecycle tests: scikit-learn's bundled wine (classification) and diabetes (regression) tables as CSV,
a new batch with seeded bad rows, in-range drifted traffic, and the notebook edits a user makes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Dataset:
    "One lifecycle data set: its table and what the lifecycle test expects of it."

    key: str  # the test id and the model name
    task: str  # classification or regression
    frame: pd.DataFrame
    target: str = "target"
    gate_metric: str = "val_acc"  # the metric the --min/--max gates read
    gate_option: str = "--min"  # --min for a score, --max for an error
    retrain_epochs: int = 4  # the retraining notebook's epochs: decides the monitor gate's outcome
    monitor_outcome: str = "promoted"  # what the gate does with the retrained version
    seeded: list[tuple[int, str, str]] = field(default_factory=list)  # (row, column, check) of the bad rows

    @property
    def features(self) -> list[str]:
        return [c for c in self.frame.columns if c != self.target]


def wine() -> Dataset:
    from sklearn.datasets import load_wine

    df = load_wine(as_frame=True).frame
    df["target"] = df["target"].map(lambda i: f"class_{i}")
    return Dataset("wine", "classification", df, retrain_epochs=4, monitor_outcome="promoted")


def diabetes() -> Dataset:
    from sklearn.datasets import load_diabetes

    df = load_diabetes(as_frame=True, scaled=False).frame
    return Dataset(
        "diabetes",
        "regression",
        df,
        gate_metric="val_rmse",
        gate_option="--max",
        retrain_epochs=1,  # one epoch is worse than the champion's two: the gate keeps the champion
        monitor_outcome="kept champion",
    )


DATASETS = {"wine": wine, "diabetes": diabetes}


def write_batch(ds: Dataset, path: Path, rows: int = 60) -> list[tuple[int, str, str]]:
    "A new batch of `rows` training rows with four seeded bad rows; returns (row, column, check) of each."
    batch = ds.frame.sample(rows, random_state=5).reset_index(drop=True).astype(object)
    first, second, third = ds.features[:3]
    hi = ds.frame[third].max()
    batch.loc[3, first] = "abc"  # text in a float column
    batch.loc[7, second] = None  # a null
    batch.loc[11, third] = hi * 10  # out of range
    bad = [(3, first, "dtype(float)"), (7, second, "not_nullable"), (11, third, f"less_than_or_equal_to({hi})")]
    if ds.task == "classification":
        batch.loc[15, ds.target] = "class_9"
        bad.append((15, ds.target, "isin(['class_0', 'class_1', 'class_2'])"))
    else:
        lo = ds.frame[ds.target].min()
        batch.loc[15, ds.target] = -1.0
        bad.append((15, ds.target, f"greater_than_or_equal_to({lo})"))
    batch.to_csv(path, index=False)
    return bad


def rows_of(ds: Dataset, n: int, seed: int = 0) -> list[dict]:
    "`n` feature rows of the training table, as JSON objects."
    return json.loads(ds.frame[ds.features].sample(n, random_state=seed).to_json(orient="records"))


def drifted_rows(ds: Dataset, n: int, seed: int = 1) -> list[dict]:
    "`n` rows moved halfway to each feature's maximum: inside the contract's bounds, far from the training data."
    x = ds.frame[ds.features].sample(n, replace=True, random_state=seed)
    moved = (x + ds.frame[ds.features].max()) / 2
    return json.loads(moved.to_json(orient="records"))


def set_parameters(notebook: Path, **values) -> None:
    "Edit the `parameters` cell of `notebook` as a user would in the editor: each `NAME = VALUE` line replaced."
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    lines = cell.source.splitlines()
    for name, value in values.items():
        i = next(i for i, line in enumerate(lines) if line.split("=")[0].strip() == name)
        lines[i] = f"{name} = {value!r}"
    cell.source = "\n".join(lines)
    nbformat.write(nb, notebook)
