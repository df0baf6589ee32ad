"""`make bench-serve`: latency and throughput of the server, against the server as it was
and against the usual hand-written one.

    python -m scripts.bench.serve [--seconds 10] [--workers N] [--out bench/results/serve.json]

Same run, one request after another per client, the default model (random weights:
speed does not depend on them) unless named:
  * ours:     `serve` (nginx, gunicorn threads, batching), with N workers and with 1;
  * ours_v1:  `serve` with the old default model (`--preset v1`), N workers: what the
              new default costs per request;
  * before:   `serve` as it was when issue 13 was filed (commit BASELINE, sync workers,
              no nginx, no batching), N workers, run from a `git archive` of that commit;
  * naive:    Flask calling `model.predict` per request (written below), N workers;
  * floor:    each model's own throughput in this process, in a tight loop.
Cases: 1 image as JSON, 1 image as JPEG, 64 images as npy, each at concurrency 1 and 8.
Prints a table and the targets, and writes JSON.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scripts.local.server_process import free_port, start_server, stop_server, wait_until_ready

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("bench_serve")
CASES = (("json_1", 1), ("jpeg_1", 1), ("npy_64", 64))
CONCURRENCY = (1, 8)
BASELINE = "2022533"  # the last commit before issue 13's serving work
ROOT = Path(__file__).resolve().parents[2]


# --- The naive baseline: what a typical hand-written SageMaker server does. ---
def create_naive_app() -> Flask:  # pragma: no cover - runs inside gunicorn
    import keras
    from flask import Flask, Response, jsonify, request
    from PIL import Image

    from sagevit.model.vit import load_model

    app = Flask(__name__)
    model = load_model(Path(os.environ["SM_MODEL_DIR"]) / "vit.keras")

    @app.get("/ping")
    def ping() -> tuple[str, int]:
        return "", 200

    @app.post("/invocations")
    def invocations() -> Response:
        if request.mimetype == "application/json":
            images = np.array(request.get_json()["instances"], dtype="float32")
        elif request.mimetype == "application/x-npy":
            images = np.load(io.BytesIO(request.get_data()), allow_pickle=False).astype("float32")
        else:
            image = Image.open(io.BytesIO(request.get_data())).convert("RGB").resize((32, 32))
            images = np.asarray(image, dtype="float32")[None]
        probabilities = keras.ops.softmax(model.predict(images, verbose=0)).numpy()
        return jsonify(predictions=probabilities.tolist())

    return app


def start_naive(model_dir: Path, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "SM_MODEL_DIR": str(model_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [
        sys.executable, "-m", "gunicorn", "--workers", str(workers), "--timeout", "120",
        "--bind", f"127.0.0.1:{port}", "scripts.bench.serve:create_naive_app()",
    ]  # fmt: skip
    return subprocess.Popen(command, env=env)


# --- Requests and the load generator. ---
def make_bodies(seed: int = 0) -> dict[str, tuple[str, bytes]]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    one = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    many = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    jpeg, npy = io.BytesIO(), io.BytesIO()
    Image.fromarray(one[0]).save(jpeg, format="JPEG", quality=95)
    np.save(npy, many)
    return {
        "json_1": ("application/json", json.dumps({"instances": one.tolist()}).encode()),
        "jpeg_1": ("image/jpeg", jpeg.getvalue()),
        "npy_64": ("application/x-npy", npy.getvalue()),
    }


def load(
    port: int,
    content_type: str,
    body: bytes,
    concurrency: int,
    seconds: float,
    on_answer: Callable[[bool], None] | None = None,
    stop: threading.Event | None = None,
) -> dict:
    """`concurrency` clients POST the body back to back for `seconds` (or until `stop` is
    set); latencies in ms. `on_answer(ok)` hears of every answer as it comes (tests follow
    the load with these two)."""
    latencies: list[float] = []
    errors = [0]
    deadline = time.monotonic() + seconds
    lock = threading.Lock()

    def client() -> None:
        headers = {"Content-Type": content_type}
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            started = time.perf_counter()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                connection.request("POST", "/invocations", body, headers)
                response = connection.getresponse()
                response.read()
                connection.close()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):  # e.g. a worker killed mid-response
                ok = False
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors[0] += 1
            if on_answer is not None:
                on_answer(ok)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    values = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "requests": len(latencies),
        "errors": errors[0],
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "requests_per_s": len(latencies) / wall,
    }


def in_process_floor(model_dir: Path, seconds: float) -> dict:
    """Images/s of the served function itself, batch 64 and batch 1, in a tight loop."""
    from sagevit_serve.predictor import Predictor

    predictor = Predictor.load(model_dir)
    result = {}
    for batch in (1, 64):
        images = np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3)).astype(np.float32)
        calls, deadline = 0, time.monotonic() + seconds
        started = time.monotonic()
        while time.monotonic() < deadline:
            predictor.predict(images)
            calls += 1
        result[f"batch_{batch}_images_per_s"] = calls * batch / (time.monotonic() - started)
    return result


def export_preset_model(model_dir: Path, preset: str = "default") -> Path:
    """A preset's ViT (random weights: speed does not depend on them), exported as the
    trainer exports it: with flip TTA where the preset serves it (the default does)."""
    from sagevit.data.channels import CIFAR10_CLASSES
    from sagevit.flags import parse_hyperparameters
    from sagevit.model.vit import build_vit
    from sagevit.training.export import export_model

    hp = parse_hyperparameters(["--preset", preset])
    model = build_vit(**hp.model_kwargs())
    export_model(model, model_dir, CIFAR10_CLASSES, hp.to_dict(), flip_tta=hp.flip_tta)
    return model_dir


def start_baseline(model_dir: Path, port: int, workers: int, workdir: Path) -> subprocess.Popen:
    """`serve` from commit BASELINE, unpacked from git (the same Python environment)."""
    tree = workdir / f"serve-{BASELINE}"
    if not tree.is_dir():
        tree.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", BASELINE, "serve", "src"], capture_output=True
        )
        if archive.returncode != 0:
            raise SystemExit(f"bench-serve runs the server as of commit {BASELINE} from git,"
                             f" which this checkout lacks: {archive.stderr.decode().strip()}")  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    path = os.pathsep.join([str(tree / "serve"), str(tree / "src")])
    return start_server(model_dir, port, workers, extra_env={"PYTHONPATH": path})


def bench_server(
    name: str, process: subprocess.Popen, port: int, seconds: float, cases: Sequence[str]
) -> dict:
    wait_until_ready(f"http://127.0.0.1:{port}", timeout=180, process=process)
    bodies = make_bodies()
    results = {}
    try:
        for case in cases:
            content_type, body = bodies[case]
            load(port, content_type, body, 1, min(2.0, seconds))  # warm every worker
            for concurrency in CONCURRENCY:
                key = f"{case}_c{concurrency}"
                results[key] = load(port, content_type, body, concurrency, seconds)
                log.info("%s %s: %s", name, key, results[key])
    finally:
        stop_server(process)
    return results


def _rate(report: dict, server: str, key: str) -> float:
    return report[server][key]["requests_per_s"]


def targets(report: dict) -> list[dict]:
    """Issue 13's targets, and the earlier ones (docs/benchmarks.md)."""
    scaling = _rate(report, "ours_1_worker", "json_1_c8") / _rate(report, "ours_1_worker", "json_1_c1")  # fmt: skip
    p50, p50_before = report["ours"]["json_1_c1"]["p50_ms"], report["before"]["json_1_c1"]["p50_ms"]
    over_before = _rate(report, "ours", "json_1_c8") / _rate(report, "before", "json_1_c8")
    over_naive = _rate(report, "ours", "json_1_c8") / _rate(report, "naive", "json_1_c8")
    npy_images_per_s = _rate(report, "ours", "npy_64_c8") * 64
    share = npy_images_per_s / report["floor"]["batch_64_images_per_s"]
    over_v1 = p50 / report["ours_v1"]["json_1_c1"]["p50_ms"]
    rows = [
        ("1 worker: concurrency 8 vs 1", ">= 2.5x", f"{scaling:.2f}x", scaling >= 2.5),
        (f"concurrency 8 vs before ({BASELINE})", ">= 2x", f"{over_before:.2f}x", over_before >= 2),
        (
            "p50 at concurrency 1 vs before",
            f"<= {p50_before:.2f} ms",
            f"{p50:.2f} ms",
            p50 <= p50_before,
        ),
        ("p50 at concurrency 1 (goal)", "<= 2 ms", f"{p50:.2f} ms", p50 <= 2),
        ("concurrency 8 vs naive", ">= 20x", f"{over_naive:.1f}x", over_naive >= 20),
        ("64-image npy vs in-process images/s", ">= 60%", f"{share:.0%}", share >= 0.6),
        ("p50 at concurrency 1, default vs v1 model", "<= 2x", f"{over_v1:.2f}x", over_v1 <= 2),
    ]  # fmt: skip  (one JSON image a request, unless the target says otherwise)
    return [dict(zip(("target", "goal", "measured", "hit"), row, strict=True)) for row in rows]


def print_table(report: dict) -> None:
    print(f"\n{'case':<12}{'server':<15}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'img/s':>9}{'errors':>7}")  # fmt: skip
    for case, batch in CASES:
        for concurrency in CONCURRENCY:
            key = f"{case}_c{concurrency}"
            for server in ("ours", "ours_v1", "ours_1_worker", "before", "naive"):
                r = report[server].get(key)
                if r is None:
                    continue
                print(
                    f"{key:<12}{server:<15}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                    f"{r['requests_per_s']:>9.1f}{r['requests_per_s'] * batch:>9.0f}{r['errors']:>7}"
                )
    for model, key in (("default", "floor"), ("v1", "floor_v1")):
        floor = report[key]
        print(f"in-process floor, {model} model: {floor['batch_1_images_per_s']:.0f} img/s at batch 1, {floor['batch_64_images_per_s']:.0f} img/s at batch 64")  # fmt: skip
    print(f"\n{'target':<50}{'goal':<11}{'measured':<11}hit")
    for t in report["targets"]:
        print(f"{t['target']:<50}{t['goal']:<11}{t['measured']:<11}{'yes' if t['hit'] else 'MISSED'}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description="Benchmark the server against earlier ones.")
    parser.add_argument("--seconds", type=float, default=10.0, help="per case and concurrency")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workdir", type=Path, default=Path("build/bench"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/serve.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    model_dir = export_preset_model(args.workdir / "model")
    v1_dir = export_preset_model(args.workdir / "model-v1", "v1")
    report: dict = {"workers": args.workers, "cpus": os.cpu_count(), "seconds": args.seconds}
    all_cases, json_only, workdir = [case for case, _ in CASES], ["json_1"], args.workdir
    servers = {
        "ours": (lambda port: start_server(model_dir, port, args.workers), all_cases),
        "ours_v1": (lambda port: start_server(v1_dir, port, args.workers), all_cases),
        "ours_1_worker": (lambda port: start_server(model_dir, port, 1), json_only),
        "before": (lambda port: start_baseline(model_dir, port, args.workers, workdir), all_cases),
        "naive": (lambda port: start_naive(model_dir, port, args.workers), json_only),
    }
    for name, (start, cases) in servers.items():
        port = free_port()
        report[name] = bench_server(name, start(port), port, args.seconds, cases)
    report["floor"] = in_process_floor(model_dir, args.seconds)
    report["floor_v1"] = in_process_floor(v1_dir, args.seconds)
    report["targets"] = targets(report)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
