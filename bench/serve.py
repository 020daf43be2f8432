"""Serving benchmark: the breast-cancer MLP behind (a) a minimal uvicorn + starlette app (the reference), (b) a
hand-written BentoML service with BentoML's defaults, (c) the service `aiwb package` generates (TorchScript runtime,
request log on), (d) `mlflow models serve`; each on 127.0.0.1 with one worker; (cn) the same service with its request
log off (`AIWB_REQUEST_LOG=off`: what logging costs); and (c) again under mixed traffic, one request in
five bad (missing field, wrong type, out of range, empty batch, not JSON, wrong content type), where `err` counts
every answer other than the expected one (200, or the 4xx naming the fault); (o) the same service with the ONNX
runtime (`--runtime onnx`); (s) with a challenger in the shadow (`--shadow challenger`); then `--swaps N`
alias moves while c=8 load runs against a service that follows its alias (failed requests, p99 during vs
before). Load comes from a bounded closed-loop
asyncio client (aiohttp) in its own process. Prints p50/p95/p99 latency, req/s and the ratios to (a); the last line
starts with `ratio`.

    python bench/serve.py                       # 10 s per level, c = 1, 8, 32; variants a,b,c,cn,cm,o,s,d; 10 swaps
    python bench/serve.py --seconds 1 --concurrency 1,8 --variants a,c     # a smoke run
    python bench/serve.py --variants a,c,c0 --after-load   # what batching buys
    python bench/serve.py --variants c,s --concurrency 8 --repeat 5   # on a busy machine: medians of 5 turns
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent

REFERENCE_APP = """
import json, os, torch
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

torch.set_num_threads(1)
MODEL = torch.jit.load(os.environ["BENCH_MODEL"])
FEATURES = json.loads(os.environ["BENCH_FEATURES"])


async def predict(request):
    rows = json.loads(await request.body())["rows"]
    x = torch.tensor([[row[f] for f in FEATURES] for row in rows])
    with torch.inference_mode():
        p = MODEL(x).tolist()
    return JSONResponse({"predictions": [{"label": int(q[1] > q[0]), "probabilities": q} for q in p]})


async def readyz(request):
    return PlainTextResponse("ok")

app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", readyz)])
"""

DEFAULTS_SERVICE = """
import json, os
import bentoml

with bentoml.importing():
    import torch

FEATURES = json.loads(os.environ["BENCH_FEATURES"])


@bentoml.service(workers=1)
class Defaults:
    def __init__(self):
        torch.set_num_threads(1)
        self.model = torch.jit.load(os.environ["BENCH_MODEL"])

    @bentoml.api
    def predict(self, rows: list[dict[str, float]]) -> list[dict]:
        x = torch.tensor([[row[f] for f in FEATURES] for row in rows])
        with torch.inference_mode():
            p = self.model(x).tolist()
        return [{"label": int(q[1] > q[0]), "probabilities": q} for q in p]
"""


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- the load client (its own process)
async def _load(url: str, bodies: list, concurrency: int, seconds: float) -> dict:
    "Closed-loop load cycling through `bodies` ([body, content type, expected status]); `errors`: other answers."
    import aiohttp

    latencies, wrong = [], 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    sent = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        body, media, _ = bodies[0]
        for _ in range(min(20, concurrency * 2)):  # warm-up: connections, first calls
            async with session.post(url, data=body.encode(), headers={"content-type": media}) as r:
                await r.read()
        end = time.perf_counter() + seconds

        async def worker():
            nonlocal sent, wrong
            while time.perf_counter() < end:
                body, media, expected = bodies[sent % len(bodies)]
                sent += 1
                t = time.perf_counter()
                async with session.post(url, data=body.encode(), headers={"content-type": media}) as r:
                    await r.read()
                latencies.append(time.perf_counter() - t)
                wrong += r.status != expected

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def q(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "n": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": q(0.50),
        "p95": q(0.95),
        "p99": q(0.99),
        "errors": wrong,
    }


def mixed_bodies(ctx: dict) -> list:
    "Four good requests to one bad, the bad ones in turn: what a fault-tolerant service answers without a 5xx."
    row, first = ctx["row"], ctx["features"][0]
    good = [json.dumps({"rows": [row]}), "application/json", 200]
    bad = [
        [json.dumps({"rows": [{k: v for k, v in row.items() if k != first}]}), "application/json", 422],
        [json.dumps({"rows": [{**row, first: "high"}]}), "application/json", 422],
        [json.dumps({"rows": [{**row, first: 1e308}]}), "application/json", 422],
        [json.dumps({"rows": []}), "application/json", 422],
        ["{rows: [", "application/json", 400],
        ["rows=1", "text/plain", 415],
    ]
    return [b for one in bad for b in [good] * 4 + [one]]


def median_of(runs: list[dict]) -> dict:
    "The median of each measure over repeated runs (the errors summed)."
    if len(runs) == 1:
        return runs[0]
    out = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in ("rps", "p50", "p95", "p99")}
    return out | {"n": sum(r["n"] for r in runs), "errors": sum(r["errors"] for r in runs)}


def run_client(url: str, bodies: list, concurrency: int, seconds: float) -> dict:
    "The load client in a process of its own: server and client do not share an interpreter."
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(bodies, f)
    out = subprocess.run(
        [sys.executable, __file__, "--client", url, f.name, str(concurrency), str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    os.unlink(f.name)
    if out.returncode != 0:
        raise RuntimeError(f"load client failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- servers
class Proc:
    def __init__(self, name: str, cmd: list[str], cwd: Path, env: dict, ready_url: str, log_path: Path):
        self.name, self.ready_url = name, ready_url
        self.log_path = log_path
        started = time.perf_counter()
        self.p = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"{name} exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(ready_url, timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"{name} not ready: {log_path.read_text()[-2000:]}")
        self.ready_s = time.perf_counter() - started

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()


def prepare(work: Path) -> dict:
    "A project with the breast-cancer MLP registered and packaged; returns what the servers need."
    from sklearn.datasets import load_breast_cancer

    from aiworkbench.config import load_settings
    from aiworkbench.contracts import infer_contract
    from aiworkbench.project import init_project
    from aiworkbench.registry import promote, register_model
    from aiworkbench.serving.artifacts import bentoml_env
    from aiworkbench.serving.package import package
    from aiworkbench.training import train_tabular

    root = init_project(work / "project", force=True)
    settings = load_settings(root, environ={})
    df = load_breast_cancer(as_frame=True).frame
    contract = infer_contract(df, "breast_cancer", target="target")
    fit = train_tabular(
        df, contract, max_epochs=2, settings=settings, register="breast_cancer", enable_progress_bar=False
    )
    promote("breast_cancer", fit.registered["version"], settings=settings)
    second = register_model(fit.model_uri, "breast_cancer", settings=settings)["version"]  # same weights: a challenger
    promote("breast_cancer", second, alias="challenger", settings=settings)
    packaged = package("breast_cancer@champion", runtime="torchscript", settings=settings)
    env = bentoml_env(settings=settings)
    model_ts = Path(env["BENTOML_HOME"]) / "models" / "breast_cancer" / f"v{packaged['version']}" / "model.ts"
    row = json.loads(df.drop(columns="target").iloc[[0]].to_json(orient="records"))[0]
    return {
        "settings": settings,
        "packaged": packaged,
        "env": env,
        "model_ts": model_ts,
        "row": row,
        "features": list(row),
        "version": packaged["version"],
        "challenger": int(second),
    }


BUILDS = {  # variant -> what `aiwb package` is given: (c) served again with one option changed
    "o": {"runtime": "onnx"},
    "s": {"shadow": "challenger", "runtime": "torchscript"},
    "f": {"follow": True, "runtime": "torchscript"},
}


def build_of(variant: str, ctx: dict, work: Path) -> Path:
    "The build folder of variant (c), or of (o), (s), (f): packaged into `work` with its option."
    from aiworkbench.serving.package import package

    if variant not in BUILDS:
        return Path(ctx["packaged"]["build_dir"])
    ref, out = "breast_cancer@champion", work / f"build-{variant}"
    return Path(package(ref, out=out, settings=ctx["settings"], **BUILDS[variant])["build_dir"])


def start(variant: str, ctx: dict, work: Path, extra_env: dict | None = None) -> tuple[Proc, str, bytes]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **ctx["env"],
        "BENCH_MODEL": str(ctx["model_ts"]),
        "BENCH_FEATURES": json.dumps(ctx["features"]),
        **(extra_env or {}),
    }
    rows_body = json.dumps({"rows": [ctx["row"]]}).encode()
    log_path = work / f"server-{variant}.log"
    if variant == "a":
        (work / "reference_app.py").write_text(REFERENCE_APP)
        cmd = [
            str(BIN / "uvicorn"),
            "reference_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        return Proc("a", cmd, work, env, f"{url}/readyz", log_path), f"{url}/predict", rows_body
    if variant == "b":
        (work / "defaults").mkdir(exist_ok=True)
        (work / "defaults" / "service.py").write_text(DEFAULTS_SERVICE)
        cmd = [str(BIN / "bentoml"), "serve", "service:Defaults", "--host", "127.0.0.1", "--port", str(port)]
        return Proc("b", cmd, work / "defaults", env, f"{url}/readyz", log_path), f"{url}/predict", rows_body
    if variant in ("c", "o", "s", "f"):
        cmd = [str(BIN / "bentoml"), "serve", ".", "--host", "127.0.0.1", "--port", str(port)]
        build = build_of(variant, ctx, work)
        return Proc(variant, cmd, build, env, f"{url}/readyz", log_path), f"{url}/predict", rows_body
    if variant == "d":
        cmd = [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/breast_cancer/{ctx['version']}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--env-manager",
            "local",
        ]
        path = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # mlflow runs `uvicorn` from PATH
        env = {**env, "MLFLOW_TRACKING_URI": ctx["settings"].tracking_uri, "PATH": path}
        body = json.dumps({"inputs": [[ctx["row"][f] for f in ctx["features"]]]}).encode()
        return Proc("d", cmd, work, env, f"{url}/ping", log_path), f"{url}/invocations", body
    raise ValueError(variant)


LABELS = {
    "a": "(a) starlette reference",
    "b": "(b) BentoML defaults",
    "c": "(c) aiwb, TorchScript",
    "cn": "(c) request log off",
    "d": "(d) mlflow models serve",
    "c0": "(c) batching off",
    "cm": "(c) 20 % bad requests",
    "o": "(o) aiwb, ONNX runtime",
    "s": "(s) aiwb, shadow",
}
VARIANT_ENV = {  # (c) with one setting changed, to show what it buys
    "c0": {"AIWB_MAX_BATCH_SIZE": "1", "AIWB_BATCHING_WINDOW_MS": "0"},
    "cn": {"AIWB_REQUEST_LOG": "off"},
}


def swap_run(ctx: dict, work: Path, swaps: int, seconds: float) -> dict:
    "c=8 load on a service following its alias: steady first, then while the alias moves `swaps` times."
    import threading

    from aiworkbench.registry import promote
    from aiworkbench.serving.loading import serving_version
    from aiworkbench.serving.server import AliasFollower

    settings, versions = ctx["settings"], [ctx["version"], ctx["challenger"]]
    proc, url, body = start("f", ctx, work, {"AIWB_FOLLOW_POLL_S": "0.1"})
    build = work / "build-f"  # where `build_of("f", ...)` packaged it
    follower = AliasFollower("breast_cancer", "champion", build, "torchscript", versions[0], 0.1, settings)
    follower.start()
    bodies = [[body.decode(), "application/json", 200]]
    try:
        steady = run_client(url, bodies, 8, seconds)
        during: dict = {}
        window = max(seconds, 3.0 * swaps)
        client = threading.Thread(target=lambda: during.update(run_client(url, bodies, 8, window)))
        client.start()
        time.sleep(min(1.0, window / 10))
        done, took = 0, []
        for i in range(swaps):
            target = versions[(i + 1) % 2]
            started = time.perf_counter()
            promote("breast_cancer", target, settings=settings)
            deadline = time.monotonic() + 60
            while serving_version(build / "follow", versions[0]) != target and time.monotonic() < deadline:
                time.sleep(0.02)
            if serving_version(build / "follow", versions[0]) == target:
                done += 1
                took.append(time.perf_counter() - started)
        client.join()
    finally:
        follower.stop.set()
        proc.stop()
        promote("breast_cancer", versions[0], settings=settings)
    return {"steady": steady, "during": during, "swaps": done, "swap_s": sum(took) / len(took) if took else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="load per concurrency level")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument(
        "--variants",
        default="a,b,c,cn,cm,o,s,d",
        help="a,b,c,d; cn: (c) with its request log off; cm: (c) under mixed traffic; o: ONNX runtime; s: shadow; "
        "c0 adds (c) with batching off",
    )
    ap.add_argument("--swaps", type=int, default=10, help="alias moves under c=8 load (0: none)")
    ap.add_argument("--repeat", type=int, default=1, help="run each level this many times, variants in turn; medians")
    ap.add_argument("--after-load", action="store_true", help="measure c=1 again after the highest concurrency")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        url, body_file, c, s = args.client
        print(json.dumps(asyncio.run(_load(url, json.loads(Path(body_file).read_text()), int(c), float(s)))))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: the `finally` below stops the server
    work = args.workdir or Path(tempfile.mkdtemp(prefix="aiwb-bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    levels = [int(c) for c in args.concurrency.split(",")]
    log(f"preparing the model in {work} ...")
    ctx = prepare(work)
    results: dict[str, dict] = {}
    running: dict[str, tuple] = {}  # all servers up at once: each level runs the variants back to back, so a
    try:  # noisy neighbour on a shared machine skews the ratios far less than one variant after the other
        for variant in args.variants.split(","):
            if variant == "cm" and "c" in running:  # the same server as (c), other traffic
                proc, url, _ = running["c"]
                running[variant] = (proc, url, mixed_bodies(ctx))
                results[variant] = {"ready_s": proc.ready_s}
                continue
            try:
                proc, url, body = start(variant[0], ctx, work, VARIANT_ENV.get(variant))
                bodies = mixed_bodies(ctx) if variant == "cm" else [[body.decode(), "application/json", 200]]
                running[variant] = (proc, url, bodies)
            except (RuntimeError, OSError) as e:
                log(f"{LABELS[variant]}: skipped: {str(e).strip().splitlines()[-1] if str(e).strip() else e}")
                continue
            results[variant] = {"ready_s": running[variant][0].ready_s}
        plan = levels + ([1] if args.after_load and len(levels) > 1 else [])
        for i, c in enumerate(plan):
            key = f"{c}" if i < len(levels) else f"{c} after load"
            rounds: dict[str, list] = {variant: [] for variant in running}
            for _ in range(args.repeat):  # the variants in turn, again and again: a busy neighbour hits them alike
                for variant, (_, url, bodies) in running.items():
                    rounds[variant].append(run_client(url, bodies, c, args.seconds))
                    log(f"{LABELS[variant]} c={key}: {rounds[variant][-1]}")
            for variant, runs in rounds.items():
                results[variant][key] = median_of(runs)
    finally:
        for proc, _, _ in running.values():
            proc.stop()
    swapped = swap_run(ctx, work, args.swaps, args.seconds) if args.swaps > 0 else None
    print(
        f"\nbreast-cancer MLP, 1 row per request, {args.seconds:g} s per level"
        + (f" (median of {args.repeat} turns)" if args.repeat > 1 else "")
        + f", one worker, 127.0.0.1, {os.cpu_count()} CPUs\n"
    )
    header = (
        f"{'server':26} {'c':>12} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'err':>5} "
        f"{'rps/(a)':>8} {'p95/(a)':>8} {'p99/(a)':>8}"
    )
    print(header)
    print("-" * len(header))
    ref = results.get("a", {})
    for variant, res in results.items():
        for key, r in res.items():
            if key == "ready_s":
                continue
            base = ref.get(key) or ref.get(key.split()[0])
            ratios = (
                f"{r['rps'] / base['rps']:8.2f} {r['p95'] / base['p95']:8.2f} {r['p99'] / base['p99']:8.2f}"
                if base
                else f"{'':8} {'':8} {'':8}"
            )
            print(
                f"{LABELS[variant]:26} {key:>12} {r['rps']:8.0f} {r['p50']:8.2f} {r['p95']:8.2f} {r['p99']:8.2f} "
                f"{r['errors']:5d} {ratios}"
            )
    print("\nready after start (s): " + ", ".join(f"{LABELS[v]} {r['ready_s']:.1f}" for v, r in results.items()))
    if swapped:
        steady, d = swapped["steady"], swapped["during"]
        print(
            f"\nalias swaps under c=8: {swapped['swaps']} done (mean {swapped['swap_s'] or 0:.1f} s from promote to "
            f"serving), failed requests {d['errors']} of {d['n']}; p99 {d['p99']:.2f} ms during vs "
            f"{steady['p99']:.2f} ms steady ({d['p99'] / steady['p99']:.2f}x); "
            f"req/s {d['rps']:.0f} vs {steady['rps']:.0f}"
        )
    mid = str(levels[1] if len(levels) > 1 else levels[0])
    parts = []
    for v in ("b", "c", "cn", "cm", "c0", "o", "s", "d"):
        if v in results and "a" in results and mid in results[v]:
            r, a = results[v][mid], results["a"][mid]
            parts.append(f"{v}/a req/s {r['rps'] / a['rps']:.2f} p95 {r['p95'] / a['p95']:.2f}")
    if "s" in results and "c" in results and mid in results["s"]:
        parts.append(f"shadow p95 +{results['s'][mid]['p95'] / results['c'][mid]['p95'] - 1:.0%}")
    if "cn" in results and "c" in results and mid in results["cn"]:  # the request log's cost: (c) vs (c) with it off
        parts.append(f"logging costs {1 - results['c'][mid]['rps'] / results['cn'][mid]['rps']:.0%} of req/s")
    if swapped:
        d = swapped["during"]
        parts.append(f"swaps {swapped['swaps']} failed {d['errors']} p99 {d['p99'] / swapped['steady']['p99']:.2f}x")
    print(f"ratio at c={mid}: " + ("; ".join(parts) if parts else "n/a (the reference did not run)"))


if __name__ == "__main__":
    main()
