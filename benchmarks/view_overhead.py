"""What watching a run live costs: the same steps run three ways, interleaved, repeated.

- ``batch``: ``Simulation.run(steps)``, one call (no view);
- ``live``: a :class:`~populace.view.LiveRun` playing ``steps`` in chunks of
  ``steps_per_frame`` on its own thread, nobody looking;
- ``watched``: the same, with the view's drawing loop (:func:`populace.view.app.watch`: the
  charts with member bands, the latest values and the model's first spatial layer, drawn at
  most ``fps`` times a second) running beside it, as the notebook widget and the browser app
  run it.

The figure asked for is ``watched / live`` seconds (the overhead of watching a run); ``live /
batch`` is what running in live chunks costs by itself. On a shared machine wall times swing
with the load, so the drawing thread's own CPU time per second of the run is recorded too
(``drawing_cpu_share``): what watching takes from the simulation's cores, whatever the load.

    python -m populace.benchmarks.view_overhead --model sir --agents 1000000 --steps 20
    python -m populace.benchmarks.view_overhead --model physarum --agents 1000000 --steps 6 \
        --save benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from typing import Any

import torch

from populace import models
from populace.benchmarks import harness
from populace.engine import Simulation
from populace.engine.context import resolve_device
from populace.engine.provenance import device_name, now, versions

MODES = ("batch", "live", "watched")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_once(
    model, mode: str, steps: int, device: str, fps: float, per_frame: int, threads: int
) -> dict:
    """Seconds to advance ``steps`` steps in ``mode`` (and, watched, the frames drawn)."""
    from populace.view import LiveRun
    from populace.view.app import Choice, watch
    from populace.view.spatial import layers as spatial_layers

    dev = resolve_device(device)
    if mode == "batch":
        sim = Simulation(model, device=dev, progress=False, threads=threads)
        _sync(dev)
        start = time.perf_counter()
        sim.run(steps)
        _sync(dev)
        return {"seconds": time.perf_counter() - start}
    run = LiveRun(model, device=dev, until=steps, steps_per_frame=per_frame, threads=threads)
    drawn: list[tuple[float, float]] = []  # (wall clock, the drawing thread's CPU time)
    cancel = threading.Event()
    watcher = None
    if mode == "watched":
        frame = run.frame()
        layers = spatial_layers(model, frame.state)
        names = [n for n in frame.history.names if not n.startswith("llm_")][:3]
        choice = Choice(tuple(names), layers[0].name if layers else "")

        def show(picture) -> None:  # called on the drawing thread
            drawn.append((time.perf_counter(), time.thread_time()))

        watcher = threading.Thread(
            target=watch, args=(run, lambda: choice, show, cancel, layers, None, fps)
        )
        watcher.start()
        run.wait(0, timeout=30)
        while not drawn:  # the first picture (step 0) before the clock starts
            time.sleep(0.01)
    start = time.perf_counter()
    run.play()
    frame = run.frame()
    while frame.status not in ("finished", "error"):
        frame = run.wait(frame.version, timeout=1.0)
    _sync(dev)
    seconds = time.perf_counter() - start
    cancel.set()
    if watcher is not None:
        watcher.join()
    run.stop()
    if frame.status == "error":
        raise RuntimeError(frame.error)
    out: dict[str, Any] = {"seconds": seconds}
    if mode == "watched":
        during = [(t, cpu) for t, cpu in drawn if start <= t <= start + seconds]
        out["frames_drawn"] = len(during)
        if during:  # CPU the drawing thread spent between its first picture before the run
            # and its last one during it, per second of the run: robust to a busy machine
            out["drawing_cpu_share"] = (during[-1][1] - drawn[0][1]) / seconds
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="sir")
    p.add_argument("--agents", type=int, default=1_000_000)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fps", type=float, default=4.0)
    p.add_argument("--steps-per-frame", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", default="", help="torch threads to compare, e.g. 1,2")
    p.add_argument("--save", metavar="DIR", help="also write the JSON record into DIR")
    args = p.parse_args(argv)
    model = models.module(args.model).build(agents=args.agents)
    dev = resolve_device(args.device)
    threads = [int(t) for t in args.threads.split(",") if t] or [torch.get_num_threads()]
    record: dict[str, Any] = {
        "name": f"view-overhead-{args.model}",
        "device": dev.type,
        "device_name": device_name(dev),
        "agents": model.agents,
        "steps": args.steps,
        "fps": args.fps,
        "steps_per_frame": args.steps_per_frame,
        "repeats": args.repeats,
        "command": "python -m populace.benchmarks.view_overhead " + " ".join(sys.argv[1:]),
        "versions": versions(),
        "date": now(),
        "by_threads": {},
    }
    run_once(model, "live", 1, args.device, args.fps, args.steps_per_frame, threads[0])  # warm
    for n in threads:
        runs: dict[str, list[dict]] = {m: [] for m in MODES}
        for r in range(args.repeats):
            order = MODES if r % 2 == 0 else MODES[::-1]  # interleaved, alternating order
            for mode in order:
                runs[mode].append(
                    run_once(
                        model, mode, args.steps, args.device, args.fps, args.steps_per_frame, n
                    )
                )
                print(f"threads={n} repeat {r} {mode}: {runs[mode][-1]}", file=sys.stderr)
        med = {m: statistics.median(x["seconds"] for x in runs[m]) for m in MODES}
        paired = zip(runs["watched"], runs["live"], strict=True)
        pairs = [w["seconds"] / v["seconds"] for w, v in paired]
        record["by_threads"][str(n)] = {
            "runs": runs,
            "median_seconds": med,
            "watched_over_live": med["watched"] / med["live"],
            "watched_over_live_per_repeat": pairs,
            "live_over_batch": med["live"] / med["batch"],
            "frames_drawn_per_s": statistics.median(
                x["frames_drawn"] / x["seconds"] for x in runs["watched"]
            ),
            "drawing_cpu_share": statistics.median(
                x.get("drawing_cpu_share", 0.0) for x in runs["watched"]
            ),
        }
    if args.save:
        print(f"saved {harness.save(record, args.save)}", file=sys.stderr)
    print(json.dumps({k: v for k, v in record.items() if k != "by_threads"}))
    for n, r in record["by_threads"].items():
        summary = {k: v for k, v in r.items() if k != "runs"}
        print(json.dumps({"threads": int(n), **summary}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
