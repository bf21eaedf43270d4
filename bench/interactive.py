"""Benchmark the interactive map in headless Chromium: render time and hover latency at 10,000
networks (goals: under 2 s and under 100 ms).

Run by hand (not in CI), after ``.ci/browser.sh install``: ``python bench/interactive.py``.
Hovers go to networks drawn at random among those on screen, so dense clusters (where the label
must be picked among many points) count as often as they occur; each hover's neighbours within
5 pixels are reported. Without Chromium it says so and prints ``{"skipped": ...}``. The last
printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from nnmanifold.analysis.features import FEATURE_NAMES
from nnmanifold.report import interactive

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser import chromium, installed, pixels  # noqa: E402

# Hover timing, installed in the page: the mousemove's timestamp, Plotly's hover event, and the
# next animation frame (the label is on screen) for each hover.
_LISTEN = """
const gd = document.getElementById('nnm-map');
window.nnmHovers = [];
document.addEventListener('mousemove', e => { window.nnmMove = e.timeStamp; }, true);
gd.on('plotly_hover', ev => {
  const t = performance.now(), move = window.nnmMove, id = ev.points[0].customdata[0];
  requestAnimationFrame(() => window.nnmHovers.push(
    {id: id, event_ms: t - move, painted_ms: performance.now() - move}));
});
"""

# Change a selector and report the milliseconds until the next frame after its handler ran.
_CHANGE = """
const [id, value, done] = arguments, select = document.getElementById(id), t = performance.now();
select.value = value;
select.dispatchEvent(new Event('change'));
requestAnimationFrame(() => setTimeout(() => done(performance.now() - t)));
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults are the figures quoted in bench/README.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000, help="networks on the map")
    parser.add_argument("--loads", type=int, default=3, help="page loads timed")
    parser.add_argument("--hovers", type=int, default=30, help="hovers timed")
    parser.add_argument("--screenshot", type=Path, default=Path("/tmp/interactive_hover.png"))
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def synthetic_zoo(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """An embedding table of n networks in a few clusters, a Wasserstein map, 1% excluded."""
    rng = np.random.default_rng(seed)
    lr = rng.choice([0.1, 0.03, 0.01, 0.003, 0.001], n)
    width = rng.choice([16, 32, 64, 128], n)
    centre = np.stack([np.log10(lr), np.log2(width) / 2], axis=1)
    accuracy = np.clip(0.9 - 0.15 * (np.log10(lr) + 2) ** 2 + rng.normal(0, 0.05, n), 0.05, 1)
    status = np.where(rng.random(n) < 0.01, "diverged", "ok")
    xy = centre + rng.normal(0, 0.12, (n, 2))
    xy[status != "ok"] = np.nan
    table = pd.DataFrame(
        {
            "model_id": [f"{rng.integers(16**12):012x}" for _ in range(n)],
            "phate_1": xy[:, 0],
            "phate_2": xy[:, 1],
            "test_accuracy": np.where(status == "ok", accuracy, np.nan),
            "status": status,
            "reason": np.where(status == "ok", None, "loss became NaN"),
            "dataset": "digits",
            "arch": rng.choice(["mlp", "cnn"], n),
            "depth": rng.choice([1, 2, 3], n),
            "width": width,
            "activation": rng.choice(["relu", "tanh"], n),
            "dropout": rng.choice([0.0, 0.2], n),
            "optimizer": "sgd",
            "lr": lr,
            "weight_decay": rng.choice([0.0, 1e-4], n),
            "batch_size": rng.choice([32, 128], n),
            "epochs": 10,
            "seed": rng.integers(0, 5, n),
            **{f: rng.normal(size=n) for f in FEATURE_NAMES},
        }
    )
    topology = table.assign(phate_1=rng.normal(size=n), phate_2=rng.normal(size=n))
    topology.loc[status != "ok", ["phate_1", "phate_2"]] = np.nan
    excluded = table.loc[status != "ok", ["model_id", "reason", "status", "test_accuracy"]]
    return table, topology, excluded


def wait_for(driver, expression: str, timeout_s: float = 60.0):
    """Poll a JS expression until it is truthy; return its value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := driver.execute_script(f"return {expression}"):
            return value
        time.sleep(0.02)
    raise TimeoutError(f"{expression} stayed false for {timeout_s} s")


def mouse(driver, kind: str, x: float, y: float) -> None:
    """A real mouse event (mouseMoved, mousePressed, mouseReleased) through Chromium's input
    pipeline (DevTools protocol)."""
    event = {"type": kind, "x": float(x), "y": float(y)}
    if kind != "mouseMoved":
        event.update(button="left", clickCount=1)
    driver.execute_cdp_cmd("Input.dispatchMouseEvent", event)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not installed():
        reason = "chromium and chromedriver are not installed; run .ci/browser.sh install (root)"
        print(f"skipped: {reason}")
        return {"skipped": reason}
    table, topology, excluded = synthetic_zoo(args.models, args.seed)
    start = time.perf_counter()
    page = interactive.map_html(table, topology, excluded, "results")
    build_s = time.perf_counter() - start
    ok = table[table["status"] == "ok"].reset_index(drop=True)
    result: dict = {
        "models": args.models,
        "on_map": len(ok),
        "build_s": round(build_s, 3),
        "html_mb": round(len(page.encode()) / 2**20, 2),
    }
    print(f"built the page for {len(ok)} networks in {build_s:.2f} s ({result['html_mb']} MB)")
    with tempfile.TemporaryDirectory() as tmp, chromium() as driver:
        path = Path(tmp) / "map.html"
        interactive.write(path, page)
        loads = []
        for _ in range(args.loads):
            driver.get(path.as_uri())
            rendered = wait_for(driver, "window.nnmPainted")
            loads.append(rendered)
        print("page load to map on screen (ms):", [round(t) for t in loads])
        result.update(render_first_ms=round(loads[0]), render_best_ms=round(min(loads)))

        # hover networks drawn at random on screen (dense regions included), one at a time
        xy = ok[["phate_1", "phate_2"]].to_numpy()
        px = pixels(driver, xy)
        inside = (px > 0).all(axis=1) & (px[:, 0] < 1000) & (px[:, 1] < 800)
        rng = np.random.default_rng(args.seed)
        candidates = rng.choice(np.flatnonzero(inside), size=args.hovers, replace=False)
        crowd = np.array([len(n) - 1 for n in cKDTree(px).query_ball_point(px[candidates], 5.0)])
        print(
            f"hovered networks' neighbours within 5 px: median {np.median(crowd):.0f}, "
            f"max {crowd.max()}"
        )
        driver.execute_script(_LISTEN)
        for i in candidates:
            mouse(driver, "mouseMoved", 5, 5)  # off the plot: every hover is a fresh one
            time.sleep(0.1)
            mouse(driver, "mouseMoved", *px[i])
            time.sleep(0.15)
        hovers = driver.execute_script("return window.nnmHovers")
        right = sum(h["id"] == ok["model_id"][i] for h, i in zip(hovers, candidates, strict=False))
        painted = np.array([h["painted_ms"] for h in hovers])
        event = np.array([h["event_ms"] for h in hovers])
        print(f"{len(hovers)} hovers, {right} on the intended network")
        print(
            f"mousemove to hover event (ms): median {np.median(event):.1f}, max {event.max():.1f}"
        )
        print(
            f"mousemove to label on screen (ms): median {np.median(painted):.1f}, "
            f"max {painted.max():.1f}"
        )
        result.update(
            hovers=len(hovers),
            hovers_on_target=int(right),
            hovered_neighbours_5px_median=float(np.median(crowd)),
            hover_event_median_ms=round(float(np.median(event)), 1),
            hover_painted_median_ms=round(float(np.median(painted)), 1),
            hover_painted_max_ms=round(float(painted.max()), 1),
        )

        # a selector change (recolour by lr, switch map and back), until the next frame
        for name, select, value in (
            ("recolour_ms", "nnm-colour", "lr"),
            ("switch_map_ms", "nnm-which", "wasserstein"),
        ):
            result[name] = round(driver.execute_async_script(_CHANGE, select, value), 1)
        driver.execute_async_script(_CHANGE, "nnm-which", "phate")
        print(f"recolour {result['recolour_ms']} ms, switch map {result['switch_map_ms']} ms")

        # screenshot: one network selected (files and neighbours beside), another hovered
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            mouse(driver, kind, *px[candidates[0]])
        time.sleep(0.3)
        mouse(driver, "mouseMoved", *px[candidates[1]])
        time.sleep(0.3)
        driver.save_screenshot(str(args.screenshot))
        result["screenshot"] = str(args.screenshot)
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
