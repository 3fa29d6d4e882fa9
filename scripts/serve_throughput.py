"""What a request to `covid-edge serve` costs against the classifier alone, in one run.

    python scripts/serve_throughput.py [--seconds 10] [--clients 1,4] [--threads 1]
                                       [--image FILE] [--rounds 2]

In each round, one after the other on the same machine:
  inference only   Classifier.run + the feature test on the sample's prepared input, in this
                   process: the ceiling, in images/s
  classify         Classifier.classify_file on the sample: what `covid-edge classify` spends
                   per image (decode, guard, lung model, inference), in ms
  serve, N clients `covid-edge serve --threads T` in a child process; N clients, each on one
                   keep-alive connection, POST the sample to /api/v1/classify for --seconds:
                   p50 latency, requests/s, and the server's CPU ms per request (psutil)
Goals (issue 16): with 1 client, p50 <= 1.5x classify's per-image time; with 4 clients,
requests/s >= 60% of the inference-only ceiling. Also prints the server's CPU per request
against classify's, and the cores it kept busy: on a machine where other work holds the
cores, a server cannot reach the ceiling whatever it does. Needs the serve and test extras
(psutil). Measures; asserts nothing. Names the host.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from covid_edge.benchmarks.cpu_features import cpu_features, summary  # noqa: E402
from covid_edge.benchmarks.device_info import cpu_model, usable_cores  # noqa: E402
from covid_edge.edge_runtime.classifier import Classifier  # noqa: E402
from covid_edge.model_card import released_models_dir  # noqa: E402

URL_PATTERN = re.compile(r"upload page\s+(http://\S+?)/\s*$")


def multipart(path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def start_server(threads: int, model: str | None) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "covid_edge", "serve", "--port", "0", "--threads",
               str(threads)]
    if model:
        command += ["--model", model]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"),
                                                      env.get("PYTHONPATH")]))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, env=env, cwd=REPO_ROOT)
    deadline = time.monotonic() + 120
    for line in process.stdout:
        match = URL_PATTERN.search(line)
        if match:
            # Drain the rest of its output so that it never blocks on a full pipe.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, match.group(1)
        if time.monotonic() > deadline:
            break
    process.kill()
    raise SystemExit("covid-edge serve did not print its URL")


def client(url: str, body: bytes, content_type: str, until: float, latencies: list,
           errors: list) -> None:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Content-Type": content_type, "Connection": "keep-alive"}
    while time.perf_counter() < until:
        start = time.perf_counter()
        connection.request("POST", "/api/v1/classify", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            errors.append(response.status)
            continue
        latencies.append((time.perf_counter() - start) * 1000.0)
    connection.close()


def load_server(url: str, server: psutil.Process, body: bytes, content_type: str,
                clients: int, seconds: float) -> dict:
    # One request first on each of a few connections: the first pays for lazy imports.
    client(url, body, content_type, time.perf_counter() + 0.5, [], [])
    latencies, errors = [], []
    cpu_before = sum(server.cpu_times()[:2])
    start = time.perf_counter()
    until = start + seconds
    workers = [threading.Thread(target=client, args=(url, body, content_type, until,
                                                     latencies, errors))
               for _ in range(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - start
    cpu = sum(server.cpu_times()[:2]) - cpu_before
    done = len(latencies)
    return {"requests": done, "errors": len(errors), "per_second": done / wall,
            "p50_ms": statistics.median(latencies) if latencies else float("nan"),
            "cpu_ms": cpu * 1000.0 / done if done else float("nan"), "cores": cpu / wall}


def inference_only(classifier: Classifier, tensor, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        features = classifier.run(tensor).features
        if classifier.guard is not None:
            classifier.guard.feature_reason(features)
        count += 1
    return count / (time.perf_counter() - start)


def classify_ms(classifier: Classifier, image: Path, seconds: float) -> tuple[float, float]:
    """(median wall ms, CPU ms) per image of classify_file."""
    walls, cpu_start, start = [], time.process_time(), time.perf_counter()
    while time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        classifier.classify_file(image)
        walls.append((time.perf_counter() - begin) * 1000.0)
    return statistics.median(walls), (time.process_time() - cpu_start) * 1000.0 / len(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads, both sides")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--image", type=Path, help="default: the first bundled sample")
    parser.add_argument("--model", help="model folder or file (default: released)")
    args = parser.parse_args()
    image = args.image or sorted((released_models_dir() / "samples").glob("*.jpg"))[0]
    clients = [int(c) for c in args.clients.split(",")]

    print(f"host: {cpu_model()}, {usable_cores()} usable cores; {summary(cpu_features())}")
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())} at the start; "
          f"image {image.name}; {args.threads} interpreter thread(s); {args.rounds} rounds of "
          f"{args.seconds:g} s per way; medians of the rounds")
    classifier = Classifier.load(args.model, num_threads=args.threads)
    prepared = classifier.prepare_file(image)
    tensor = prepared.input_tensor
    inference_only(classifier, tensor, 1.0)  # warm-up
    body, content_type = multipart(image)
    process, url = start_server(args.threads, args.model)
    server = psutil.Process(process.pid)
    ceilings, classifies, served = [], [], {n: [] for n in clients}
    try:
        for _ in range(args.rounds):
            ceilings.append(inference_only(classifier, tensor, args.seconds))
            classifies.append(classify_ms(classifier, image, args.seconds))
            for n in clients:
                served[n].append(load_server(url, server, body, content_type, n,
                                             args.seconds))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    ceiling = statistics.median(ceilings)
    per_image = statistics.median(c[0] for c in classifies)
    per_image_cpu = statistics.median(c[1] for c in classifies)
    print(f"  inference only   {ceiling:7.1f} images/s")
    print(f"  classify         {per_image:7.1f} ms per image (CPU {per_image_cpu:.1f} ms)")
    for n in clients:
        runs = served[n]

        def med(key):
            return statistics.median(r[key] for r in runs)
        line = (f"  serve, {n} client{'s' if n > 1 else ' '} {med('per_second'):6.1f} req/s, "
                f"p50 {med('p50_ms'):6.1f} ms, server CPU {med('cpu_ms'):.1f} ms per request "
                f"({med('cpu_ms') / per_image_cpu:.2f}x classify's), {med('cores'):.2f} cores "
                f"busy, {sum(r['errors'] for r in runs)} errors")
        print(line)
        if n == 1:
            ratio = med("p50_ms") / per_image
            print(f"    p50 / classify's per-image time: {ratio:.2f} (goal <= 1.5: "
                  f"{'met' if ratio <= 1.5 else 'MISSED'})")
        if n == 4:
            share = med("per_second") / ceiling
            print(f"    req/s / inference-only ceiling: {share:.0%} (goal >= 60%: "
                  f"{'met' if share >= 0.6 else 'MISSED'})")
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())} at the end")


if __name__ == "__main__":
    main()
