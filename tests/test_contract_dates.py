"Contracts of data with dates; YAML that reads back as written (infer, save, load, validate); bad files exit 2."

import datetime as dt
import re
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiworkbench.contracts import infer_contract, load_contract
from aiworkbench.datasets import read_csv

# text YAML would read as something else if it were written plain (YAML 1.1 or 1.2)
AMBIGUOUS = [
    "1970-01-01", "2020-01-01T00:00:00Z", "007", "010", "0x1F", "0o17", "1e3", "1_000", "+1", "-0", ".inf", "12:30",
    "yes", "No", "on", "OFF", "y", "N", "true", "False", "null", "Null", "~", "", " ", " pad ", "a: b", "- x", "#c",
    "'q'", '"dq"', "\\", "é", "line\nbreak", "tab\t", "NaN", "[1]", "{a: 1}", "&anchor", "*alias", "!tag", "%",
]  # fmt: skip
TEXT = st.one_of(st.sampled_from(AMBIGUOUS), st.text(st.characters(exclude_categories=("Cs",)), max_size=8))
ZONES = [dt.UTC, ZoneInfo("Europe/Paris"), ZoneInfo("America/St_Johns"), dt.timezone(dt.timedelta(hours=5, minutes=45))]
NAMES = ["a", "yes", "1970-01-01", "007", "null", "x y", "Year", "ok"]
# what a YAML 1.2 (core schema) or full YAML 1.1 reader takes for a null, boolean or number: PyYAML misses some
NOT_TEXT = re.compile(
    r"(|~|null|Null|NULL|true|True|TRUE|false|False|FALSE|y|Y|n|N|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF"
    r"|[-+]?[0-9][0-9_]*|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))"
)


def plain_texts(node) -> list[str]:
    "Every text scalar of a composed YAML document written without quotes."
    if isinstance(node, yaml.ScalarNode):
        return [node.value] if node.style is None and node.tag == "tag:yaml.org,2002:str" else []
    children = node.value if isinstance(node, yaml.SequenceNode) else [x for kv in node.value for x in kv]
    return [t for child in children for t in plain_texts(child)]


def nullable(values: list, nulls: list[bool]) -> list:
    return [None if n else v for v, n in zip(values, nulls, strict=True)]


@st.composite
def column(draw, n: int) -> pd.Series:
    kind = draw(st.sampled_from(["int", "float", "bool", "str", "date", "datetime", "datetime_tz"]))
    nulls = draw(st.lists(st.booleans(), min_size=n, max_size=n)) if draw(st.booleans()) else [False] * n
    if kind == "int":
        values = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n))
        return pd.Series(nullable(values, nulls), dtype="Int64" if any(nulls) else "int64")
    if kind == "float":
        values = draw(st.lists(st.floats(allow_nan=False), min_size=n, max_size=n))
        return pd.Series(nullable(values, nulls), dtype="float64")
    if kind == "bool":
        values = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        return pd.Series(nullable(values, nulls), dtype="boolean" if any(nulls) else "bool")
    if kind == "str":
        values = draw(st.lists(TEXT, min_size=n, max_size=n))
        return pd.Series(nullable(values, nulls), dtype=draw(st.sampled_from([object, "str"])))
    if kind == "date":  # what pyarrow gives for a date32 column read with its defaults
        values = draw(st.lists(st.dates(), min_size=n, max_size=n))
        return pd.Series(nullable(values, nulls), dtype=object)
    values = draw(st.lists(st.datetimes(dt.datetime(1700, 1, 1), dt.datetime(2250, 1, 1)), min_size=n, max_size=n))
    times = pd.Series(pd.to_datetime(nullable(values, nulls)))
    if kind == "datetime_tz":  # one zone per column, as a datetime64 column holds it
        times = times.dt.tz_localize("UTC").dt.tz_convert(draw(st.sampled_from(ZONES)))
    return times


@st.composite
def frames(draw) -> tuple[pd.DataFrame, str | None, int]:
    n = draw(st.integers(0, 30))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
    df = pd.DataFrame({name: draw(column(n)) for name in names})
    target = draw(st.one_of(st.none(), st.sampled_from(names)))
    return df, target, draw(st.integers(1, 25))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frames())
def test_infer_save_load_is_exact_and_the_frame_validates(tmp_path_factory, case):
    df, target, max_categories = case
    contract = infer_contract(df, "prop", target=target, max_categories=max_categories)
    path = contract.save(tmp_path_factory.mktemp("c") / "prop.yaml")
    loaded = load_contract(path)
    assert loaded == contract, path.read_text()
    misread = [t for t in plain_texts(yaml.compose(path.read_text())) if NOT_TEXT.fullmatch(t)]
    assert not misread, f"text another YAML reader takes for something else: {misread}"
    for name, spec in loaded.columns.items():  # the bounds keep their types, the categories theirs
        for bound in (spec.min, spec.max):
            assert bound is None or type(bound) is {"int": int, "float": float, "datetime": str}[spec.dtype]
        if spec.dtype == "str" and spec.allowed:
            assert set(spec.allowed) == set(df[name].dropna().astype(str))
    report = loaded.validate(df)
    assert report.ok, str(report)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frames())
def test_a_csv_round_trip_validates_against_its_inferred_contract(tmp_path_factory, case):
    df, target, max_categories = case
    folder = tmp_path_factory.mktemp("csv")
    for name in df.columns:  # a bare carriage return is a line break to CSV readers, and pandas leaves it unquoted
        if df[name].dtype in (object, "str"):
            df[name] = df[name].map(lambda v: v.replace("\r", "\n") if isinstance(v, str) else v)
    df.to_csv(folder / "t.csv", index=False)
    first = read_csv(folder / "t.csv")
    contract = load_contract(
        infer_contract(first, "t", target=target, max_categories=max_categories).save(folder / "t.yaml")
    )
    report = contract.validate(read_csv(folder / "t.csv", contract))
    assert report.ok, str(report)


# --- the CLI, each step its own process


def years_csv(path, n: int = 60, first_year: int = 1970):
    rows = [
        f"{first_year + i % 12}-01-01,2020-03-0{1 + i % 9}T10:{i % 60:02d}:00Z,{i * 1.5},{'ab'[i % 2]}"
        for i in range(n)
    ]
    path.write_text("Year,seen,x,label\n" + "\n".join(rows) + "\n")
    return path


def test_infer_a_table_with_an_iso_date_column(aiwb, tmp_path):
    data = years_csv(tmp_path / "years.csv")
    r = aiwb("data", "infer", data, "-o", tmp_path / "C.yaml", "--target", "label")
    assert r.code == 0, r.err
    written = yaml.safe_load((tmp_path / "C.yaml").read_text())
    year = written["columns"]["Year"]
    assert year == {"dtype": "datetime", "min": "1970-01-01", "max": "1981-01-01"}, year
    assert written["columns"]["seen"]["min"] == "2020-03-01T10:00:00+00:00"
    assert aiwb("data", "validate", data, "--contract", tmp_path / "C.yaml").code == 0
    r = aiwb(
        "data",
        "validate",
        years_csv(tmp_path / "old.csv", first_year=1969),
        "--contract",
        tmp_path / "C.yaml",
        "--json",
    )
    report = r.json()
    assert r.code == 1 and {(f["row"], f["column"]) for f in report["failures"]} == {
        (0, "Year"),
        (12, "Year"),
        (24, "Year"),
        (36, "Year"),
        (48, "Year"),
    }
    assert aiwb("data", "diff", tmp_path / "C.yaml", tmp_path / "C.yaml").code == 0


CLEAN = "name: t\ncolumns:\n  Year: {dtype: datetime}\n  seen: {dtype: datetime}\n  x: {dtype: float}\n"
BAD = {  # a malformed contract file -> what each of its lines must say (file, line, column.key, the fix)
    "dates-as-categories": (
        "name: t\ncolumns:\n  Year:\n    dtype: str\n    allowed: [1970-01-01, 1971-01-01]\n"
        "  seen: {dtype: datetime}\n  x: {dtype: float}\n  label: {dtype: str}\n",
        [
            r"line 5: columns\.Year\.allowed: item 1 `1970-01-01` is a date, not a value of dtype `str` "
            r".*quote .*`\"1970-01-01\"`"
        ],
    ),
    "wrong-types": (
        "name: t\ncolumns:\n  Year: {dtype: datetime, nullable: maybe}\n  seen: {dtype: datetime, min: [1]}\n"
        "  x: {dtype: float, unique: 3}\n  label: text\n",
        [
            r"line 3: columns\.Year\.nullable: `maybe` is text; expected true or false",
            r"line 4: columns\.seen\.min: `\[1\]` is a list; a bound is a number",
            r"line 5: columns\.x\.unique: `3` is a number; expected true or false",
            r"line 6: columns\.label: `text` is text; expected a mapping of keys",
        ],
    ),
    "columns-a-list": (
        "name: t\ncolumns: [Year, seen]\n",
        [r"line 2: columns: `\[\"Year\", \"seen\"\]` is a list; expected a mapping"],
    ),
}


@pytest.mark.parametrize("command", ["validate", "diff-old", "diff-new"])
@pytest.mark.parametrize("case", list(BAD))
def test_a_malformed_contract_exits_2_with_one_line_per_problem(aiwb, tmp_path, case, command):
    text, expected = BAD[case]
    bad, clean = tmp_path / "bad.yaml", tmp_path / "clean.yaml"
    bad.write_text(text)
    clean.write_text(CLEAN)
    if command == "validate":
        r = aiwb("data", "validate", years_csv(tmp_path / "y.csv"), "--contract", bad)
    else:
        r = aiwb("data", "diff", *((bad, clean) if command == "diff-old" else (clean, bad)))
    assert r.code == 2, (r.out, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == len(expected), r.err
    for line, pattern in zip(lines, expected, strict=True):
        assert line.removeprefix("error: ").startswith(f"contract {bad} line "), line
        assert re.search(pattern, line), (pattern, line)
    assert not re.search(r"pydantic|input_value|Traceback|For further information", r.err + r.out)


def test_dates_among_text_stay_text_categories(aiwb, tmp_path):
    "A date column with one value that is not a date is text: its categories are dates as text, quoted in the file."
    years = [f"{1970 + i}-01-01" for i in range(11)] + ["unknown"]
    (tmp_path / "t.csv").write_text("Year,n\n" + "".join(f"{years[i % 12]},{i}\n" for i in range(48)))
    r = aiwb("data", "infer", tmp_path / "t.csv", "-o", tmp_path / "t.yaml")
    assert r.code == 0 and not re.search(r"pydantic|input_value|Traceback", r.out + r.err), r.err
    text = (tmp_path / "t.yaml").read_text()
    assert '- "1970-01-01"' in text, text
    assert yaml.safe_load(text)["columns"]["Year"] == {"dtype": "str", "allowed": sorted(years)}
    assert aiwb("data", "validate", tmp_path / "t.csv", "--contract", tmp_path / "t.yaml").code == 0


def test_every_dtype_keeps_its_type_through_the_cli(aiwb, tmp_path):
    "Categories that look like dates, numbers, booleans or null stay text; bounds stay numbers and ISO date-times."
    codes = ["1970-01-01", "007", "yes", "null", "1e3", "0o17", "y", "~"]
    df = pd.DataFrame(
        {
            "code": codes * 5,
            "n": np.arange(40),
            "f": np.linspace(-1.5, 2.5, 40),
            "on": [True, False] * 20,
            "day": [dt.date(2001, 1, 1) + dt.timedelta(days=i) for i in range(40)],
        }
    )
    df.to_parquet(tmp_path / "t.parquet")
    assert aiwb("data", "infer", tmp_path / "t.parquet", "-o", tmp_path / "t.yaml", "--target", "code").code == 0
    columns = yaml.safe_load((tmp_path / "t.yaml").read_text())["columns"]
    assert columns["code"]["allowed"] == sorted(codes)
    assert (columns["n"]["min"], columns["n"]["max"], columns["f"]["min"]) == (0, 39, -1.5)
    assert type(columns["n"]["min"]) is int and type(columns["f"]["max"]) is float
    assert (columns["day"]["dtype"], columns["day"]["min"], columns["day"]["max"]) == (
        "datetime",
        "2001-01-01",
        "2001-02-09",
    )
    assert aiwb("data", "validate", tmp_path / "t.parquet", "--contract", tmp_path / "t.yaml").code == 0
