"""Server load benchmark (issue 17; a script, not a test): a CPU `medadapt serve` child process, 8 concurrent
clients x 3 jobs each on the bundled sample CT, then the interactive re-prompt latency through the server.

Each client uploads the sample and a label map with the liver painted on 3 slices, then runs, one after the
other: ``adapt`` with Fill between slices, ``propagate`` with the base model (no training) and a ``slice``
re-prompt from one click. Every result must equal the one a single client got on the idle server first (bit
for bit): no lost or mixed-up job. The server's resident memory is sampled throughout (peak and end).

    python benchmarks/server_load.py --clients 8 --jobs 3 --reprompts 20
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "MedAdaptSlicer"))
from MedAdaptSlicerLib.remote_client import RemoteClient, RemoteError  # noqa: E402

SAMPLE = REPO / "Resources" / "Sample"
LIVER = 5


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def painted_case(folder: Path) -> tuple[Path, Path, tuple[int, int, int]]:
    """(image, painted label map, one voxel click (x, y, z) on the liver of a painted slice)."""
    labels = sitk.ReadImage(str(SAMPLE / "ct_abdomen_liver_spleen.nii.gz"))
    liver = sitk.GetArrayFromImage(labels) == LIVER
    rows = np.flatnonzero(liver.any(axis=(1, 2)))
    chosen = [rows[len(rows) * k // 4] for k in (1, 2, 3)]
    painted = np.zeros(liver.shape, np.uint8)
    painted[chosen] = liver[chosen]
    image = sitk.GetImageFromArray(painted)
    image.CopyInformation(labels)
    sitk.WriteImage(image, str(folder / "painted.nii.gz"))
    y, x = (int(v.mean()) for v in np.nonzero(liver[chosen[1]]))
    return SAMPLE / "ct_abdomen_image.nii.gz", folder / "painted.nii.gz", (x, y, int(chosen[1]))


def jobs_of(image: str, painted: str, click) -> list[dict]:
    """The three jobs every client runs."""
    return [{"kind": "adapt", "image": image, "exemplars": painted, "options": {"method": "fill"}},
            {"kind": "propagate", "image": image, "exemplars": painted},
            {"kind": "slice", "image": image, "index": click[2],
             "points": {"coordinates": "voxel", "points": [{"position": list(click)}]}}]


def run_client(url: str, token: str, case, folder: Path, jobs: int) -> list[np.ndarray]:
    """Upload the case, run the jobs one after the other, return their result arrays."""
    client = RemoteClient(url, token, timeout=600)
    image, painted = client.upload(case[0])["id"], client.upload(case[1])["id"]
    arrays = []
    for number, job in enumerate(jobs_of(image, painted, case[2])[:jobs]):
        submitted = client.submit(job)
        while (state := client.job(submitted["id"], wait=30))["state"] in ("queued", "running"):
            pass
        if state["state"] != "done":
            raise RuntimeError(f"job {number} {state['state']}: {state['error']}")
        target = folder / f"{submitted['id']}.nii.gz"
        arrays.append(sitk.GetArrayFromImage(sitk.ReadImage(str(client.result(submitted["id"], target)))))
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=3, choices=(1, 2, 3))
    parser.add_argument("--reprompts", type=int, default=20)
    parser.add_argument("--port", type=int, default=8797)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="medadapt-load-"))
    token = "load-benchmark-token-0123456789"
    (folder / "tokens").write_text(f"bench {token}\n")
    server = subprocess.Popen([sys.executable, "-m", "medadapt.cli", "serve", "--data", str(folder / "data"),
                               "--port", str(args.port), "--token-file", str(folder / "tokens")])
    url = f"http://127.0.0.1:{args.port}"
    try:
        client = RemoteClient(url, token, timeout=600)
        while True:
            try:
                client.health()
                break
            except RemoteError:
                time.sleep(0.5)
        samples, done = [rss_mb(server.pid)], threading.Event()

        def sample_memory():
            while not done.wait(0.5):
                samples.append(rss_mb(server.pid))
        threading.Thread(target=sample_memory, daemon=True).start()
        case = painted_case(folder)
        clock = time.monotonic()
        reference = run_client(url, token, case, folder, args.jobs)
        print(f"one client alone: {time.monotonic() - clock:.1f} s for {args.jobs} jobs; server RSS "
              f"{max(samples):.0f} MB", flush=True)
        outcomes: dict[int, object] = {}

        def one(number: int) -> None:
            try:
                outcomes[number] = run_client(url, token, case, folder, args.jobs)
            except Exception as exc:  # noqa: BLE001 - counted as a lost job below
                outcomes[number] = exc
        clock = time.monotonic()
        threads = [threading.Thread(target=one, args=(n,)) for n in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - clock
        correct = sum(1 for result in outcomes.values() if not isinstance(result, Exception)
                      for got, want in zip(result, reference) if np.array_equal(got, want))
        failed = [str(r) for r in outcomes.values() if isinstance(r, Exception)]
        print(f"{args.clients} clients x {args.jobs} jobs: {correct} of {args.clients * args.jobs} results equal "
              f"to the single-client ones in {seconds:.1f} s; failures: {failed or 'none'}; server RSS peak "
              f"{max(samples):.0f} MB, now {rss_mb(server.pid):.0f} MB", flush=True)
        image = client.upload(case[0])["id"]
        latencies = []
        for n in range(args.reprompts + 1):
            x, y, z = case[2]
            job = {"kind": "slice", "image": image, "index": z,
                   "points": {"coordinates": "voxel", "points": [{"position": [x + (n % 5) - 2, y, z]}]}}
            clock = time.monotonic()
            submitted = client.submit(job)
            state = client.job(submitted["id"], wait=30)
            client.result(state["id"], folder / "reprompt.nii.gz")
            if n:  # the first one encodes the slice
                latencies.append(time.monotonic() - clock)
        latencies.sort()
        print(f"re-prompt through the server (submit, wait, download; slice cached): median "
              f"{statistics.median(latencies):.2f} s, p95 {latencies[int(0.95 * (len(latencies) - 1))]:.2f} s "
              f"over {len(latencies)}", flush=True)
        done.set()
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
