"""Feature views as users run them, and point-in-time correctness against a brute-force oracle.

The property test draws random keys, event times (with ties, inside one commit and across commits), TTLs, entities with
no history and entity time zones, and compares `get_training_set` (the sort-and-search join of `nbs/16d_pit_join`) with
a loop that reads the rule off the page: the latest row at or before the entity's time, within the TTL, the last written
among ties. A TTL of 0 is no limit (as in Feast). The online store runs on SQLite and, in one test, on the PostgreSQL of
`aiwb team up` (one server for the module, stopped by pid).
"""

import itertools
import json
import os
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import AIWB, Result
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from team_servers import stop_team

T0 = pd.Timestamp("2026-03-01T00:00:00Z")
CONTRACT = "name: f\ncolumns:\n  k: {dtype: int}\n  ts: {dtype: datetime}\n  v: {dtype: float}\n"


@pytest.fixture(scope="module")
def lib_project(tmp_path_factory):
    from aiworkbench.config import load_settings
    from aiworkbench.project import init_project

    root = init_project(tmp_path_factory.mktemp("pit") / "p")
    (root / "features").mkdir(exist_ok=True)
    return load_settings(root)


def oracle(commits, entities, ttl_s):
    "For each entity (key, instant): the value the rule picks, else None."
    rows = [(k, ts, (c, i), v) for c, rows in enumerate(commits) for i, (k, ts, v) in enumerate(rows)]
    out = []
    for k, t in entities:
        cands = [r for r in rows if r[0] == k and r[1] <= t and (ttl_s is None or (t - r[1]).total_seconds() <= ttl_s)]
        # the latest time wins; among equal times the last written wins; TTL judged on the chosen row only
        best = max(((r[1], r[2], r[3]) for r in rows if r[0] == k and r[1] <= t), default=None)
        if best is not None and ttl_s is not None and (t - best[0]).total_seconds() > ttl_s:
            best = None
        assert (best is None) == (not cands) or ttl_s is not None
        out.append(None if best is None else best[2])
    return out


feature_row = st.tuples(st.integers(0, 3), st.integers(0, 40))  # key, second after T0 (few values: many ties)
counter = itertools.count()


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    commits=st.lists(st.lists(feature_row, min_size=0, max_size=12), min_size=1, max_size=3),
    entities=st.lists(st.tuples(st.integers(0, 5), st.integers(-5, 60)), min_size=1, max_size=15),
    ttl=st.one_of(st.none(), st.integers(0, 20)),
    zone=st.sampled_from([None, "UTC", "Asia/Kolkata", "America/Los_Angeles"]),
)
def test_point_in_time_matches_oracle(lib_project, commits, entities, ttl, zone):
    from aiworkbench.contracts import parse_contract
    from aiworkbench.features import apply, get_training_set
    from aiworkbench.lake import write

    s = lib_project
    table = f"t{next(counter)}"
    c = parse_contract(CONTRACT)
    n = itertools.count()
    commits = [[(k, T0 + pd.Timedelta(seconds=sec), float(next(n))) for k, sec in rows] for rows in commits]
    for rows in commits:
        df = pd.DataFrame(rows, columns=["k", "ts", "v"]).astype({"k": "int64", "v": "float64"})
        df["ts"] = pd.to_datetime(df["ts"], utc=True)
        write(table, df, c, settings=s)
    ttl_line = f"ttl: {ttl}s\n" if ttl is not None else ""
    (s.root / "features" / "pit.yaml").write_text(
        f"source: {table}\nentities: [k]\ntimestamp: ts\n{ttl_line}features: [v]\n"
    )
    apply(settings=s)
    instants = [(k, T0 + pd.Timedelta(seconds=sec)) for k, sec in entities]
    when = pd.Series([t for _, t in instants])
    when = when.dt.tz_localize(None) if zone is None else when.dt.tz_convert(zone)  # naive times are read as UTC
    ent = pd.DataFrame({"k": [k for k, _ in instants], "event_timestamp": when, "label": range(len(instants))})
    got = get_training_set(ent, ["pit:v"], settings=s)
    assert got["label"].tolist() == list(range(len(instants)))  # entity order and columns kept
    want = oracle(commits, instants, ttl if ttl != 0 else None)
    have = [None if pd.isna(x) else float(x) for x in got["v"]]
    assert have == want, (commits, instants, ttl, zone)
    for (k, t), value in zip(instants, have, strict=True):  # never a value from after the entity's time
        if value is not None:
            row = next(r for rows in commits for r in rows if r[2] == value)
            assert row[0] == k and row[1] <= t


def run(root: Path, *args, timeout=300, **extra_env) -> Result:
    env = {k: v for k, v in os.environ.items() if k != "AIWB_ROOT"} | extra_env
    return Result(
        subprocess.run([AIWB, *map(str, args)], cwd=root, capture_output=True, text=True, timeout=timeout, env=env)
    )


def test_views_training_sets_materialize_online_and_train(tmp_path):
    root = tmp_path / "p"
    subprocess.run([AIWB, "init", str(root)], check=True, capture_output=True)
    (root / "tx.yaml").write_text(
        "name: tx\ncolumns:\n  user: {dtype: int}\n  ts: {dtype: datetime}\n  spend: {dtype: float}\n"
        "  visits: {dtype: int}\n"
    )
    lines = ["user,ts,spend,visits"] + [
        f"{u},2026-01-{d:02d}T00:00:00Z,{u * 10 + d}.5,{d}" for u in range(1, 41) for d in (1, 5, 9)
    ]
    (root / "tx.csv").write_text("\n".join(lines) + "\n")
    assert run(root, "data", "write", "tx", "tx.csv", "--contract", "tx.yaml").code == 0
    views = root / "features"
    views.mkdir(exist_ok=True)
    (views / "spend.yaml").write_text(
        "source: tx\nentities: [user]\ntimestamp: ts\nttl: 3d\nfeatures: [spend, visits]\n"
    )

    # a view never applied, then a view naming a column the contract lacks: exit 2 naming file and key
    r = run(root, "features", "materialize", "spend")
    assert r.code == 2 and "never applied" in r.err, r.err
    (views / "bad.yaml").write_text("source: tx\nentities: [user]\ntimestamp: ts\nfeatures: [spend, age]\n")
    r = run(root, "features", "apply")
    assert r.code == 2 and "bad.yaml` key `features`: column `age` is not in contract `tx@v1`" in r.err, r.err
    (views / "bad.yaml").write_text("source: nosuch\nentities: [user]\ntimestamp: ts\nfeatures: [spend]\n")
    r = run(root, "features", "apply")
    assert r.code == 2 and "key `source`" in r.err and "`nosuch` does not exist" in r.err, r.err
    (views / "bad.yaml").unlink()
    r = run(root, "features", "apply", "--json")
    assert r.code == 0 and r.json()[0]["view"] == "spend", r.err

    # a training set: entity times between and after the events, one past the TTL, one user with no history
    ents = ["user,event_timestamp,churned"] + [
        f"{u},2026-01-{d:02d}T12:00:00+01:00,{(u + d) % 2}" for u in range(1, 42) for d in (2, 6, 20)
    ]
    (root / "ents.csv").write_text("\n".join(ents) + "\n")
    r = run(
        root,
        "features",
        "training-set",
        "ents.csv",
        "--features",
        "spend:spend,spend:visits",
        "-o",
        "ts.parquet",
        "--json",
    )
    assert r.code == 0, r.err
    got = pd.read_parquet(root / "ts.parquet")
    row = got[(got.user == 3) & (got.event_timestamp.astype(str).str.contains("01-06"))].iloc[0]
    assert (row.spend, row.visits) == (35.5, 5)
    assert got[got.event_timestamp.astype(str).str.contains("01-20")].spend.isna().all()  # 11 days: past the TTL
    assert got[got.user == 41].spend.isna().all()  # no history
    r = run(root, "features", "training-set", "ents.csv", "--features", "spend:age", "-o", "x.csv")
    assert r.code == 2 and "spend:age" in r.err, r.err
    # entities that cannot join: exit 2 naming the file and the column (a key of another type: the view and both types)
    (root / "text_keys.csv").write_text("user,event_timestamp\nu1,2026-01-06T00:00:00Z\n")
    (root / "no_key.csv").write_text("customer,event_timestamp\n1,2026-01-06T00:00:00Z\n")
    (root / "bad_time.csv").write_text("user,event_timestamp\n1,last tuesday\n")
    for name, words in [
        ("text_keys.csv", "view `spend` (" + str(views / "spend.yaml") + ") key `user`: the entities hold `str`"),
        ("no_key.csv", "`no_key.csv`: the entities have no key column `user`"),
        ("bad_time.csv", "`bad_time.csv`: column `event_timestamp` of the entities is not a date-time"),
    ]:
        r = run(root, "features", "training-set", name, "--features", "spend:spend", "-o", "x.csv")
        assert r.code == 2 and words in r.err and name in r.err, (name, r.err)
    assert not (root / "x.csv").exists()

    # train from the view; the run names the view and its table version
    r = run(
        root,
        "train",
        "--features",
        "spend:spend,spend:visits",
        "--entities",
        "ents.csv",
        "--target",
        "churned",
        "--epochs",
        "1",
        "--json",
    )
    assert r.code == 0, r.err
    assert json.loads(r.json()["lineage"]["aiwb.features.views"])["spend"]["version"] == 0

    # materialize, then incrementally after an append; online lookups with staleness; unknown entity exit 2
    r = run(root, "features", "materialize", "spend", "--json")
    assert r.code == 0 and (r.json()["rows"], r.json()["mode"]) == (40, "full"), r.err
    (root / "more.csv").write_text("user,ts,spend,visits\n7,2026-01-10T00:00:00Z,1.25,99\n")
    assert run(root, "data", "write", "tx", "more.csv", "--contract", "tx.yaml").code == 0
    r = run(root, "features", "materialize", "spend", "--json")
    assert r.code == 0 and (r.json()["rows"], r.json()["mode"], r.json()["from_version"]) == (1, "incremental", 0)
    r = run(root, "features", "online", "spend", "--entity", "user=7", "--json")
    assert r.code == 0 and r.json()["values"] == {"spend": 1.25, "visits": 99}, r.err
    assert r.json()["stale"] is (time.time() - pd.Timestamp("2026-01-10T00:00:00Z").timestamp() > 3 * 86400)
    r = run(root, "features", "online", "spend", "--entity", "user=999")
    assert r.code == 2 and "user=999" in r.err, r.err


@pytest.fixture(scope="module")
def team_project():
    "A project whose online store is the `aiwb_jobs` database of its own `aiwb team up` (stopped by pid at the end)."
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="aiwb-online-pg-"))
    base.chmod(0o755)  # as root, the cluster runs as `postgres`, which must reach its data folder
    root = base / "p"
    subprocess.run([AIWB, "init", str(root)], check=True, capture_output=True)
    r = run(root, "team", "up", "--json", timeout=300)
    state_file = root / ".aiwb" / "team" / "team.json"
    try:
        assert r.code == 0, r.out + r.err
        up = r.json()
        uri = up["settings"]["jobs.store"]
        settings = root / "settings.ini"
        settings.write_text(settings.read_text().replace("[features]\n", f"[features]\nonline = {uri}\n", 1))
        yield {"root": root, "uri": uri, "env": {"PGPASSFILE": up["pgpass"]}}
    finally:
        stop_team(state_file)
        shutil.rmtree(base, ignore_errors=True)


def test_online_store_on_postgresql(team_project, monkeypatch):
    "`[features] online = postgresql+psycopg://...`: materialize (full, then incremental) and look up, CLI and library."
    root, env = team_project["root"], team_project["env"]
    (root / "tx.yaml").write_text(
        "name: tx\ncolumns:\n  user: {dtype: int}\n  ts: {dtype: datetime}\n  spend: {dtype: float}\n"
    )
    lines = ["user,ts,spend"] + [f"{u},2026-01-{d:02d}T00:00:00Z,{u * 10 + d}.5" for u in range(1, 31) for d in (1, 5)]
    (root / "tx.csv").write_text("\n".join(lines) + "\n")
    assert run(root, "data", "write", "tx", "tx.csv", "--contract", "tx.yaml").code == 0
    (root / "features").mkdir(exist_ok=True)
    (root / "features" / "spend.yaml").write_text(
        "source: tx\nentities: [user]\ntimestamp: ts\nttl: 0s\nfeatures: [spend]\n"
    )
    assert run(root, "features", "apply", **env).code == 0

    r = run(root, "features", "materialize", "spend", "--json", **env)
    assert r.code == 0 and (r.json()["rows"], r.json()["mode"]) == (30, "full"), r.out + r.err
    (root / "more.csv").write_text("user,ts,spend\n7,2026-01-10T00:00:00Z,1.25\n99,2026-01-02T00:00:00Z,3.5\n")
    assert run(root, "data", "write", "tx", "more.csv", "--contract", "tx.yaml").code == 0
    r = run(root, "features", "materialize", "spend", "--json", **env)
    assert r.code == 0 and (r.json()["rows"], r.json()["mode"], r.json()["from_version"]) == (2, "incremental", 0)

    r = run(root, "features", "online", "spend", "--entity", "user=7", "--json", **env)
    assert r.code == 0 and r.json()["values"] == {"spend": 1.25}, r.out + r.err
    assert r.json()["stale"] is False  # `ttl: 0s` is no limit, as in Feast
    r = run(root, "features", "online", "spend", "--entity", "user=1000", **env)
    assert r.code == 2 and "user=1000" in r.err, r.err

    # the library in this process: rows of many keys in one query, over the same PostgreSQL tables
    from aiworkbench.online import OnlineStore, lookup_many

    monkeypatch.setenv("PGPASSFILE", env["PGPASSFILE"])
    with OnlineStore(team_project["uri"]) as store:
        got = lookup_many(store, "spend", [{"user": 3}, {"user": "99"}, {"user": 1000}])
        assert [g and g["values"]["spend"] for g in got] == [35.5, 3.5, None]
        assert store.conn.info.transaction_status == 0  # idle: a lookup holds no transaction open
    with OnlineStore(team_project["uri"]) as store:  # the connection of a store closes only with it
        assert lookup_many(store, "spend", [{"user": 7}])[0]["values"] == {"spend": 1.25}
