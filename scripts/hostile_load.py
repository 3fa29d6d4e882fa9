"""Hostile input and load on loopback: the figures of docs/hardening.md.

    python scripts/hostile_load.py [--stalled 1100] [--uploads 30] [--upload-mb 19.5]
                                   [--slow-body] [--skip-files] [--json OUT.json]

1. files: `covid-edge classify` on each file of the hostile corpus (tests/hostile_corpus.py)
   in a fresh process; the peak RSS (VmHWM) of each, the worst named.
2. stalled: `covid-edge serve` started with the soft file limit systemd gives services (1,024),
   then --stalled connections that send half a request line and stop; while they are open, a
   normal /api/v1/classify request: its status and time. Then how many stalled connections the
   server closed by itself, and how many lines and bytes it logged.
3. uploads: --uploads concurrent uploads of one --upload-mb PNG (incompressible noise, the
   largest that fits under the default 20 MB limit); the server's peak RSS while they run,
   sampled every 20 ms, and the status of each answer.
4. --slow-body: one upload whose body stops half-way; the status and when it came (408 after
   the 30 s idle timeout).

Needs the serve and test extras (psutil, httpx). Measures; asserts nothing. Names the host.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import platform
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "src"), str(REPO_ROOT / "tests")]

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from PIL import Image  # noqa: E402

import hostile_corpus  # noqa: E402

SAMPLE = sorted((REPO_ROOT / "models" / "samples").glob("covid-*.jpg"))[0]
URL = re.compile(r"upload page\s+http://([\d.]+):(\d+)/")
SYSTEMD_SOFT_NOFILE = 1024
PEAK_PROBE = (
    "import sys\nfrom covid_edge.cli import main\n"
    "try:\n    main(sys.argv[1:])\nfinally:\n"
    "    kb = int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))"
    ".split()[1])\n"
    "    sys.stderr.write('\\nPEAK_KB %d\\n' % kb)\n")


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"),
                                                      env.get("PYTHONPATH")]))
    return env


def host() -> dict:
    flags, model = set(), platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.+)", text).group(1).strip()
        flags = set(re.search(r"flags\s*:\s*(.+)", text).group(1).split())
    except (OSError, AttributeError):
        pass
    wanted = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]
    return {"cpu": model, "flags": wanted, "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version()}


# -- 1. files ----------------------------------------------------------------------------------

def files_peak_rss(workdir: Path) -> dict:
    entries = hostile_corpus.build(workdir / "files", SAMPLE, large=True)
    rows = []
    for entry in entries:
        path = workdir / "files" / entry.name
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PEAK_PROBE, "classify", str(path)],
                              capture_output=True, text=True, env=child_env(), timeout=300)
        peak = int(done.stderr.rsplit("PEAK_KB", 1)[1].split()[0]) / 1024
        rows.append({"file": entry.name, "bytes": path.stat().st_size, "exit": done.returncode,
                     "peak_rss_mb": round(peak, 1),
                     "seconds": round(time.perf_counter() - start, 2),
                     "traceback": "Traceback" in done.stderr})
        print(f"  {entry.name:34s} exit {done.returncode}  peak {peak:6.1f} MB", flush=True)
    worst = max(rows, key=lambda r: r["peak_rss_mb"])
    return {"rows": rows, "worst": worst, "tracebacks": sum(r["traceback"] for r in rows)}


# -- the server --------------------------------------------------------------------------------

class Server:
    """`covid-edge serve --port 0` with systemd's default soft file limit."""

    def __init__(self, *args: str):
        self.log = tempfile.TemporaryFile()

        def systemd_limits():
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (SYSTEMD_SOFT_NOFILE, hard))

        self.process = subprocess.Popen(
            [sys.executable, "-m", "covid_edge", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=child_env(),
            preexec_fn=systemd_limits)
        for line in self.process.stdout:
            match = URL.search(line)
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                break
        else:
            raise RuntimeError("covid-edge serve did not start")
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        self.ps = psutil.Process(self.process.pid)

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def logged(self) -> tuple[int, int]:
        self.log.seek(0)
        data = self.log.read()
        return data.count(b"\n"), len(data)

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def post(host: str, port: int, data: bytes, name: str, timeout: float = 120):
    import httpx
    start = time.perf_counter()
    try:
        response = httpx.post(f"http://{host}:{port}/api/v1/classify", timeout=timeout,
                              files={"file": (name, data, "application/octet-stream")})
        status = response.status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return status, time.perf_counter() - start


def stalled_connections(count: int) -> dict:
    raise_own_fd_limit(count + 256)
    server = Server()
    baseline_rss = server.rss_mb()
    sockets, refused = [], 0
    try:
        start = time.perf_counter()
        for _ in range(count):
            try:
                sock = socket.create_connection((server.host, server.port), timeout=5)
                sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: load\r\nX-Slow: ")
                sockets.append(sock)
            except OSError:
                refused += 1
        opened_s = time.perf_counter() - start
        status, seconds = post(server.host, server.port, SAMPLE.read_bytes(), SAMPLE.name)
        rss_with_stalled = server.rss_mb()
        time.sleep(12)  # past the 10 s header deadline
        closed = 0
        for sock in sockets:
            sock.setblocking(False)
            try:
                closed += sock.recv(1) == b""
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                closed += 1
        lines, size = server.logged()
        return {"stalled": count, "opened": len(sockets), "refused_by_client_os": refused,
                "opened_in_s": round(opened_s, 2), "normal_request_status": status,
                "normal_request_s": round(seconds, 3),
                "server_rss_mb": {"idle": round(baseline_rss, 1),
                                  "with_stalled": round(rss_with_stalled, 1)},
                "closed_by_server_after_12_s": closed, "log_lines": lines, "log_bytes": size,
                "log": server.log_text()[-2000:]}
    finally:
        for sock in sockets:
            sock.close()
        server.stop()


def concurrent_uploads(count: int, megabytes: float) -> dict:
    side = int((megabytes * 2**20) ** 0.5)
    noise = np.random.default_rng(7).integers(0, 256, (side, side), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG", compress_level=1)
    data = buffer.getvalue()
    server = Server()
    try:
        post(server.host, server.port, SAMPLE.read_bytes(), SAMPLE.name)  # warm
        idle = server.rss_mb()
        peak, stop = [idle], threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], server.rss_mb())
                except psutil.Error:
                    return
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=count) as pool:
            answers = list(pool.map(lambda i: post(server.host, server.port, data, f"u{i}.png",
                                                   timeout=600), range(count)))
        wall = time.perf_counter() - start
        stop.set()
        sampler.join()
        statuses = collections.Counter(str(status) for status, _ in answers)
        lines, size = server.logged()
        return {"uploads": count, "upload_mb": round(len(data) / 2**20, 2),
                "picture": f"{side}x{side} 8-bit gray noise PNG",
                "statuses": dict(statuses), "wall_s": round(wall, 1),
                "server_rss_mb": {"idle": round(idle, 1), "peak": round(peak[0], 1)},
                "log_lines": lines, "log_bytes": size}
    finally:
        server.stop()


def slow_body() -> dict:
    server = Server()
    try:
        data = SAMPLE.read_bytes()
        head = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpg\"\r\n"
                b"Content-Type: image/jpeg\r\n\r\n")
        length = len(head) + len(data) + len(b"\r\n--b--\r\n")
        sock = socket.create_connection((server.host, server.port))
        sock.sendall(b"POST /api/v1/classify HTTP/1.1\r\nHost: load\r\nContent-Type: "
                     b"multipart/form-data; boundary=b\r\nContent-Length: "
                     + str(length).encode() + b"\r\n\r\n" + head + data[:len(data) // 2])
        start = time.perf_counter()
        sock.settimeout(120)
        reply = sock.recv(200)
        return {"status_line": reply.split(b"\r\n", 1)[0].decode("latin-1"),
                "after_s": round(time.perf_counter() - start, 1)}
    finally:
        server.stop()


def raise_own_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stalled", type=int, default=1100)
    parser.add_argument("--uploads", type=int, default=30)
    parser.add_argument("--upload-mb", type=float, default=19.5)
    parser.add_argument("--slow-body", action="store_true")
    parser.add_argument("--skip-files", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = {"host": host()}
    print(f"host: {report['host']}", flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        if not args.skip_files:
            print("1. classify on each hostile file:", flush=True)
            report["files"] = files_peak_rss(Path(workdir))
            worst = report["files"]["worst"]
            print(f"   worst: {worst['file']} {worst['peak_rss_mb']} MB; tracebacks: "
                  f"{report['files']['tracebacks']}", flush=True)
    if args.stalled:
        print(f"2. {args.stalled} stalled connections + one normal request:", flush=True)
        report["stalled"] = stalled_connections(args.stalled)
        print("   " + json.dumps({k: v for k, v in report["stalled"].items() if k != "log"}),
              flush=True)
    if args.uploads:
        print(f"3. {args.uploads} concurrent {args.upload_mb} MB uploads:", flush=True)
        report["uploads"] = concurrent_uploads(args.uploads, args.upload_mb)
        print("   " + json.dumps(report["uploads"]), flush=True)
    if args.slow_body:
        print("4. an upload whose body stalls half-way:", flush=True)
        report["slow_body"] = slow_body()
        print("   " + json.dumps(report["slow_body"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
