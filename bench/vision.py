"""Vision figures: in-process latency and throughput, service latency and RSS, training speed.

    python bench/vision.py [--model models/resnet18_tomato.pth] [--n 100] [--threads 2]
                           [--service-only] [--serve-arg=--max-wait-ms=5 ...]

Pictures are rendered by the simulator's renderer (256 px JPEGs, all three classes). The
service runs as its own process (``python -m bt_sorter.vision.serve``) on a free loopback
port; its peak RSS is the kernel's high-water mark (VmHWM) for that process. Each client
posts on a fresh connection, as the course's client does. The service targets are checked
in the same run: p50 with 4 concurrent clients <= 1.5x the 1-client p50, throughput with 8
clients >= 3x one client, and 0 crossed answers with 32 clients sending different pictures
at the same moment (each answer compared with the in-process answer for its picture).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import math
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bt_sorter.broker import free_port, wait_for_port  # noqa: E402
from bt_sorter.sim.render import (  # noqa: E402
    BORDERLINE_BAND,
    LABELS,
    MARGIN,
    RAW_MAX,
    RIPE_MIN,
    render_picture,
    render_ripeness,
    ripeness_label,
    write_dataset,
)
from bt_sorter.vision.dataset import PictureDataset, scan_folder  # noqa: E402
from bt_sorter.vision.preprocess import decode_picture  # noqa: E402
from bt_sorter.vision.resnet import build  # noqa: E402
from bt_sorter.vision.serve import METRICS_PATH, PREDICT_PATH  # noqa: E402
from bt_sorter.vision.torch_backend import TorchClassifier  # noqa: E402
from bt_sorter.vision.train import train_one_epoch  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pictures(n: int, seed: int = 9000) -> list[bytes]:
    return [render_picture(np.random.default_rng([seed, i]), LABELS[i % 3]) for i in range(n)]


def bench_in_process(model: Path, pics: list[bytes], threads: int) -> None:
    classifier = TorchClassifier(model, threads)
    for p in pics[:5]:
        classifier.classify(p)
    times = []
    for p in pics:
        start = time.perf_counter()
        classifier.classify(p)
        times.append((time.perf_counter() - start) * 1000)
    print(
        f"in-process batch 1 (decode+preprocess+forward), {threads} threads, "
        f"{classifier.info.input_size} px: p50 {statistics.median(times):.1f} ms  "
        f"p99 {pct(times, 0.99):.1f} ms  (n={len(times)})"
    )
    images = [decode_picture(p) for p in pics]
    for batch in (1, 8, 32):
        classifier.classify_images(images[:batch])
        start = time.perf_counter()
        done = 0
        while done < len(images):
            chunk = images[done : done + batch]
            classifier.classify_images(chunk)
            done += len(chunk)
        rate = done / (time.perf_counter() - start)
        print(f"in-process throughput batch {batch:>2} (preprocess+forward): {rate:.0f} pictures/s")


def bench_borderline(model: Path, per_side: int, threads: int) -> None:
    """Accuracy on fruit whose ripeness sits MARGIN..MARGIN+BAND from a class threshold."""
    classifier = TorchClassifier(model, threads)
    right = total = 0
    wrong: list[str] = []
    for t, threshold in enumerate((RAW_MAX, RIPE_MIN)):
        for s, side in enumerate((-1.0, 1.0)):
            for i in range(per_side):
                rng = np.random.default_rng([31337, t, s, i])
                ripeness = threshold + side * (MARGIN + rng.random() * BORDERLINE_BAND)
                image = render_ripeness(rng, ripeness)
                _, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
                label = classifier.classify(jpeg.tobytes()).label
                total += 1
                if label == ripeness_label(ripeness):
                    right += 1
                else:
                    wrong.append(f"r={ripeness:.3f}->{label}")
    print(
        f"borderline-only accuracy (ripeness {MARGIN}..{MARGIN + BORDERLINE_BAND} from a "
        f"threshold, train domain): {right / total:.4f} ({right}/{total}) {' '.join(wrong[:10])}"
    )


def post(port: int, body: bytes) -> tuple[float, dict]:
    """One request on a fresh connection (as the course's client does): (ms, answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    start = time.perf_counter()
    conn.request("POST", PREDICT_PATH, body=body)
    response = conn.getresponse()
    answer = json.loads(response.read())
    elapsed = (time.perf_counter() - start) * 1000
    conn.close()
    if response.status != 200 or answer["code"] != 0:
        raise RuntimeError(f"service answered {response.status}: {answer}")
    return elapsed, answer


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_clients(port: int, pics: list[bytes], clients: int) -> tuple[list[float], float]:
    """Each of ``clients`` threads posts its share of ``pics`` back to back: (ms, per s)."""
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        start = time.perf_counter()
        times = [t for t, _ in pool.map(lambda p: post(port, p), pics)]
        rate = len(pics) / (time.perf_counter() - start)
    return times, rate


def crossed_answers(port: int, model: Path, threads: int, clients: int, rounds: int) -> int:
    """Answers that do not belong to their picture when ``clients`` post different pictures
    at once (each compared with the in-process answer for the same picture)."""
    pics = []
    for i in range(clients):  # fruit near a class threshold: a confidence of its own each
        ripeness = (0.24, 0.36, 0.64, 0.76)[i % 4] + (i // 4) * 0.002
        image = render_ripeness(np.random.default_rng([4242, i]), ripeness, size=128)
        pics.append(cv2.imencode(".jpg", image)[1].tobytes())
    local = TorchClassifier(model, threads)
    expected = [local.classify(p) for p in pics]
    crossed = 0
    barrier = threading.Barrier(clients)

    def client(i: int) -> int:
        wrong = 0
        for _ in range(rounds):
            barrier.wait()  # everyone sends at the same moment
            _, answer = post(port, pics[i])
            got = answer["results"][0]
            if (
                got["label"] != expected[i].label
                or abs(got["confidence"] - expected[i].confidence) > 1e-3
            ):
                wrong += 1
        return wrong

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        crossed = sum(pool.map(client, range(clients)))
    distinct = len({(e.label, round(e.confidence, 4)) for e in expected})
    print(f"  ({clients} pictures, {distinct} distinct (label, confidence) answers)")
    return crossed


def batch_sizes(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", METRICS_PATH)
    text = conn.getresponse().read().decode()
    conn.close()
    values = {}
    for line in text.splitlines():
        if line.startswith(("classify_batch_size_sum", "classify_batch_size_count")):
            name, value = line.split()
            values[name] = float(value)
    count = values.get("classify_batch_size_count", 0.0)
    mean = values.get("classify_batch_size_sum", 0.0) / count if count else 0.0
    return f"{count:.0f} forward passes, mean batch {mean:.2f}"


def bench_service(model: Path, pics: list[bytes], threads: int, extra: list[str]) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bt_sorter.vision.serve", "--model", str(model),
         "--port", str(port), "--threads", str(threads), "--device", "cpu",
         "--log-level", "warning", *extra],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        if not wait_for_port("127.0.0.1", port, timeout=60):
            raise RuntimeError("service did not start")
        run_clients(port, pics[:16], 4)  # warm up
        p50: dict[int, float] = {}
        rate: dict[int, float] = {}
        for clients in (1, 4, 8):
            times, rate[clients] = run_clients(port, pics, clients)
            p50[clients] = statistics.median(times)
            print(
                f"service, {clients} concurrent client(s): p50 {p50[clients]:.1f} ms  "
                f"p99 {pct(times, 0.99):.1f} ms  {rate[clients]:.0f} requests/s (n={len(times)})"
            )
        print(f"service batching: {batch_sizes(port)}")
        ratio_p50, ratio_rate = p50[4] / p50[1], rate[8] / rate[1]
        print(f"target p50(4 clients) <= 1.5 x p50(1): {ratio_p50:.2f}x "
              f"{'MET' if ratio_p50 <= 1.5 else 'NOT MET'}")  # fmt: skip
        print(f"target throughput(8 clients) >= 3 x throughput(1): {ratio_rate:.2f}x "
              f"{'MET' if ratio_rate >= 3.0 else 'NOT MET'}")  # fmt: skip
        crossed = crossed_answers(port, model, threads, clients=32, rounds=3)
        print(f"target 0 crossed answers, 32 concurrent clients x 3 rounds: {crossed} "
              f"{'MET' if crossed == 0 else 'NOT MET'}")  # fmt: skip
        print(f"service peak RSS (VmHWM): {peak_rss_mib(process.pid):.0f} MiB")
    finally:
        process.terminate()
        process.wait(timeout=10)


def bench_training(input_size: int, threads: int, per_class: int = 32) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(Path(tmp), per_class, seed=77)
        classes, samples = scan_folder(Path(tmp))
        loader = DataLoader(
            PictureDataset(samples, input_size, train=True), batch_size=32, shuffle=True
        )
        model = build("resnet18", len(classes))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        train_one_epoch(model, nn.CrossEntropyLoss(), optimizer, loader, 0, progress=False)
        start = time.perf_counter()
        train_one_epoch(model, nn.CrossEntropyLoss(), optimizer, loader, 1, progress=False)
        seconds = time.perf_counter() - start
        dataset = PictureDataset(samples, input_size, train=True)
        for i in range(len(dataset)):  # read the files once, as an epoch after the first does
            dataset.image(i)
        start = time.perf_counter()
        for i in range(len(dataset)):
            dataset[i]
        data_per_pic = (time.perf_counter() - start) / len(dataset)
    print(
        f"training data path (decode + augment + preprocess), one process: "
        f"{data_per_pic * 1000:.2f} ms per picture = {data_per_pic * 3060:.1f} s of one core per "
        f"3060-picture epoch; a GPU epoch in <= 5 s needs about "
        f"{max(1, math.ceil(data_per_pic * 3060 / 4.5))} --workers (4.5 s data + 0.5 s network)"
    )
    per_pic = seconds / len(samples)
    print(
        f"training resnet18 at {input_size} px, batch 32, {threads} threads: "
        f"{per_pic * 1000:.1f} ms per picture (augment+forward+backward); "
        f"{per_pic * 1000:.0f} s per 1000-picture epoch; "
        f"{per_pic * 3060 / 60:.1f} min per epoch of the shipped model's 3060 training pictures"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "resnet18_tomato.pth")
    parser.add_argument("--n", type=int, default=100, help="pictures per measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--service-only", action="store_true", help="only the service figures")
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="pass to the service, e.g. --serve-arg=--max-wait-ms=1",
    )
    args = parser.parse_args()
    pics = pictures(args.n)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} default threads")
    if args.service_only:
        bench_service(args.model, pics, args.threads, args.serve_arg)
        return 0
    bench_in_process(args.model, pics, args.threads)
    bench_borderline(args.model, args.n, args.threads)
    bench_service(args.model, pics, args.threads, args.serve_arg)
    input_size = TorchClassifier(args.model, args.threads).info.input_size
    bench_training(input_size, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
