"""The interactive map: offline HTML, true nearest neighbours, and a real headless Chromium that
renders every network and shows the right one under the mouse."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
import pytest
from browser import chromium, installed, pixels
from conftest import ROOT

from nnmanifold.analysis.features import FEATURE_NAMES
from nnmanifold.report import interactive

BROWSER_SH = ROOT / ".ci" / "browser.sh"
CANNOT_INSTALL = 3  # browser.sh's exit status when apt-get cannot install chromium


def zoo_tables(n: int = 30, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A small embedding table like geometry/embedding.csv (two networks diverged), the
    Wasserstein map (one ok network absent) and excluded.csv."""
    rng = np.random.default_rng(seed)
    ids = [f"m{i:03d}{rng.integers(16**6):06x}" for i in range(n)]
    status = np.array(["ok"] * n, dtype=object)
    status[[3, 17]] = "diverged"
    xy = rng.normal(size=(n, 2))
    xy[status != "ok"] = np.nan
    table = pd.DataFrame(
        {
            "model_id": ids,
            "phate_1": xy[:, 0],
            "phate_2": xy[:, 1],
            "test_accuracy": np.where(status == "ok", rng.uniform(0.1, 0.99, n), np.nan),
            "status": status,
            "reason": np.where(status == "ok", None, "loss became NaN </script><b>x</b>"),
            "dataset": "digits",
            "arch": "mlp",
            "depth": rng.choice([1, 2], n),
            "channels": np.nan,
            "width": rng.choice([16, 32, 64], n),
            "lr": rng.choice([0.1, 0.01, 0.001], n),
            "batch_size": 32,
            "seed": rng.integers(0, 3, n),
            **{f: rng.normal(size=n) for f in FEATURE_NAMES},
        }
    )
    topology = table.assign(phate_1=rng.normal(size=n), phate_2=rng.normal(size=n))
    topology.loc[(status != "ok") | (np.arange(n) == 5), ["phate_1", "phate_2"]] = np.nan
    excluded = table.loc[status != "ok", ["model_id", "reason", "status", "test_accuracy"]]
    return table, topology, excluded


def page_json(page: str, element_id: str) -> dict:
    """The JSON held by the page's <script type="application/json" id=element_id>."""
    text = re.search(
        f'<script type="application/json" id="{element_id}">(.*?)</script>', page, re.S
    )
    return json.loads(text.group(1))


class _Resources(HTMLParser):
    """Every URL a page would load: script/img/iframe/source src, link href, CSS url()."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "embed", "audio", "video") and a.get("src"):
            self.urls.append(a["src"])
        if tag == "link" and a.get("href"):
            self.urls.append(a["href"])

    def handle_data(self, data: str) -> None:
        if self.lasttag == "style":
            self.urls += re.findall(r"url\(([^)]*)\)", data)


def test_page_loads_nothing_from_outside_and_inlines_plotly():
    from plotly.offline import get_plotlyjs

    page = interactive.map_html(*zoo_tables(), results_label="results")
    parser = _Resources()
    parser.feed(page)
    assert parser.urls == []
    assert get_plotlyjs() in page


def test_neighbours_are_the_nearest_on_the_map_by_brute_force():
    rng = np.random.default_rng(1)
    xy = rng.normal(size=(200, 2))
    xy[[7, 50, 199]] = np.nan  # networks not on this map
    got = interactive.nearest_on_map(xy, k=3)
    placed = np.flatnonzero(np.isfinite(xy).all(axis=1))
    for i in range(len(xy)):
        if i not in placed:
            assert (got[i] == -1).all()
            continue
        d = [(np.hypot(*(xy[j] - xy[i])), j) for j in placed if j != i]
        assert got[i].tolist() == [j for _, j in sorted(d)[:3]]


def test_neighbours_of_a_tiny_map_are_padded_with_minus_one():
    xy = np.array([[0.0, 0.0], [1.0, 0.0], [np.nan, 1.0], [3.0, 0.0]])
    got = interactive.nearest_on_map(xy, k=3)
    assert got.tolist() == [[1, 3, -1], [0, 3, -1], [-1, -1, -1], [1, 0, -1]]


def test_hover_data_holds_id_accuracy_status_every_hyperparameter_and_feature():
    table, topology, excluded = zoo_tables()
    page = interactive.map_html(table, topology, excluded, results_label="results")
    fig, data = page_json(page, "nnm-figure"), page_json(page, "nnm-data")
    fields = data["fields"]
    shown = ["depth", "width", "lr", "batch_size", "arch", "seed", *FEATURE_NAMES]
    assert set(shown) <= set(fields)
    assert "channels" not in fields  # never set in this zoo
    rows = {r[0]: dict(zip(fields, r, strict=True)) for r in fig["data"][0]["customdata"]}
    ok = table[table["status"] == "ok"]
    assert sorted(rows) == sorted(ok["model_id"])  # the diverged ones are not on the map
    for r in ok.itertuples():
        row = rows[r.model_id]
        assert row["accuracy"] == f"{r.test_accuracy:.4f}"
        assert row["status"] == "ok"
        assert (row["depth"], row["width"], float(row["lr"])) == (str(r.depth), str(r.width), r.lr)
        assert float(row["silhouette"]) == pytest.approx(r.silhouette, rel=1e-3)
    template = fig["data"][0]["hovertemplate"]
    assert all(f"{f}: %{{customdata[{i}]}}" in template for i, f in enumerate(fields) if i)


def test_colour_choices_are_levels_for_grids_and_a_scale_for_continuous_values():
    table, topology, excluded = zoo_tables()
    page = interactive.map_html(table, topology, excluded)
    colours = page_json(page, "nnm-data")["colours"]
    fields = page_json(page, "nnm-data")["fields"]
    assert set(colours) == set(fields) - {"model"}
    ok = table[table["status"] == "ok"].reset_index(drop=True)
    width = colours["width"]
    assert width["kind"] == "levels" and width["levels"] == ["16", "32", "64"]
    assert [width["levels"][c] for c in width["values"]] == ok["width"].astype(str).tolist()
    acc = colours["accuracy"]
    assert acc["kind"] == "numeric" and not acc["log"]
    assert np.allclose(acc["values"], ok["test_accuracy"])


def test_wide_positive_ranges_are_coloured_by_log10():
    table, topology, excluded = zoo_tables()
    table["lr"] = np.geomspace(1e-5, 1.0, len(table))
    colours = page_json(interactive.map_html(table, topology, excluded), "nnm-data")["colours"]
    ok = table[table["status"] == "ok"]
    assert colours["lr"]["log"] and np.allclose(colours["lr"]["values"], np.log10(ok["lr"]))


def test_maps_share_rows_and_a_network_missing_from_one_map_is_null_there():
    table, topology, excluded = zoo_tables()
    data = page_json(interactive.map_html(table, topology, excluded), "nnm-data")
    ok = table[table["status"] == "ok"].reset_index(drop=True)
    w = data["maps"]["wasserstein"]
    by_id = topology.set_index("model_id")
    for i, mid in enumerate(ok["model_id"]):
        expected = by_id.loc[mid, "phate_1"]
        assert w["x"][i] is None if np.isnan(expected) else w["x"][i] == expected
    absent = ok.index[ok["model_id"] == table["model_id"][5]][0]
    assert w["neighbours"][absent] == [-1, -1, -1]
    assert all(absent not in n for n in w["neighbours"])
    xy = ok[["phate_1", "phate_2"]].to_numpy()
    assert data["maps"]["phate"]["neighbours"] == interactive.nearest_on_map(xy).tolist()


def test_excluded_models_are_listed_with_their_reason_escaped():
    table, topology, excluded = zoo_tables()
    page = interactive.map_html(table, topology, excluded)
    for mid in excluded["model_id"]:
        assert f"<td>{mid}</td><td>diverged</td>" in page
    assert "loss became NaN &lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in page
    assert "</script><b>x</b>" not in page


def test_a_table_without_coordinates_is_refused_naming_the_columns():
    table, _, excluded = zoo_tables()
    with pytest.raises(ValueError, match=r"lacks columns \['phate_1', 'phate_2'\]"):
        interactive.map_html(table.drop(columns=["phate_1", "phate_2"]), None, excluded)
    with pytest.raises(ValueError, match="no network has map coordinates"):
        interactive.map_html(table.assign(phate_1=np.nan), None, excluded)


# -- in a real browser -------------------------------------------------------------------------


def _unavailable(reason: str) -> NoReturn:
    """Skip; but in CI (CI=true), where the browser must run, fail."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """A headless Chromium; .ci/browser.sh installs it first when it is missing (as root)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("selenium is not installed (pip install the test extras: '.[test]')")
    if not installed():
        if os.geteuid() != 0:
            _unavailable("chromium is not installed and installing it needs root (.ci/browser.sh)")
        install = subprocess.run([BROWSER_SH, "install"], capture_output=True, text=True)
        if install.returncode == CANNOT_INSTALL:
            _unavailable(f"chromium cannot be installed here: {install.stderr.strip()}")
        assert install.returncode == 0, f".ci/browser.sh install failed:\n{install.stderr}"
    with chromium() as driver:
        yield driver


def _open(driver, path: Path) -> None:
    driver.get(path.as_uri())
    for _ in range(300):
        if driver.execute_script("return window.nnmRendered !== undefined"):
            return
        time.sleep(0.1)
    raise AssertionError(f"the map never rendered; console: {driver.get_log('browser')}")


@pytest.mark.browser
def test_browser_renders_every_network_and_hover_names_the_one_under_the_mouse(
    browser, tmp_path: Path
):
    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    table, topology, excluded = zoo_tables()
    path = tmp_path / "map.html"
    interactive.write(path, interactive.map_html(table, topology, excluded, "results"))
    _open(browser, path)
    ok = table[table["status"] == "ok"].reset_index(drop=True)
    xy = ok[["phate_1", "phate_2"]].to_numpy()

    # as many drawn points as networks on the map, and nothing fetched from anywhere
    positions = browser.execute_script(
        "return Array.from(document.getElementById('nnm-map')._fullLayout._plots.xy._scene"
        ".markerOptions[0].positions)"
    )
    drawn = np.asarray(positions, dtype=float).reshape(-1, 2)
    assert len(drawn[np.isfinite(drawn).all(axis=1)]) == len(ok)
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0

    # WebGL drew a coloured mark at each network's pixel (the page background is white)
    shot = np.asarray(Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB"))
    px = np.rint(pixels(browser, xy)).astype(int)
    marks = shot[px[:, 1], px[:, 0]].astype(int)
    assert (marks.sum(axis=1) < 3 * 235).all(), marks

    # the mouse on the most isolated network's pixel shows its id and accuracy
    gaps = np.hypot(*(px[:, None, :] - px[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(gaps, np.inf)
    i = int(gaps.min(axis=1).argmax())
    assert gaps[i].min() > 12, "test map too crowded to hover one point"
    actions = ActionBuilder(browser)
    actions.pointer_action.move_to_location(int(px[i, 0]), int(px[i, 1]))
    actions.perform()
    label = ""
    for _ in range(50):
        label = browser.execute_script(
            "const h = document.querySelector('.hoverlayer .hovertext');"
            "return h ? h.textContent : ''"
        )
        if label:
            break
        time.sleep(0.05)
    assert ok["model_id"][i] in label and f"accuracy: {ok['test_accuracy'][i]:.4f}" in label
    assert not any(m in label for m in ok["model_id"].drop(i))

    # clicking it shows its folder and its three nearest networks on the map
    ActionChains(browser).click().perform()
    time.sleep(0.3)
    files = browser.find_element("id", "nnm-files").text
    assert files == f"results/models/{ok['model_id'][i]}/"
    picks = browser.find_elements("css selector", "#nnm-neighbours td.pick")
    near = [td.text for td in picks]
    order = np.argsort(np.hypot(*(xy - xy[i]).T))
    assert near == ok["model_id"][order[1:4]].tolist()
    # ... with the hyperparameters that vary in the zoo, those unlike the selected one marked
    head, *rows = browser.execute_script(
        "return Array.from(document.getElementById('nnm-neighbours').rows, r => "
        "Array.from(r.cells, c => [c.textContent, c.classList.contains('differs')]))"
    )
    varying = ["depth", "width", "lr", "seed"]
    assert [text for text, _ in head] == ["model", "map distance", "accuracy", *varying]
    for row, j in zip(rows, order[1:4], strict=True):
        marked = [h for h, (_, differs) in zip(varying, row[3:], strict=True) if differs]
        assert marked == [h for h in varying if ok[h][j] != ok[h][i]]


@pytest.mark.browser
def test_browser_selectors_recolour_and_switch_to_the_wasserstein_map(browser, tmp_path: Path):
    from selenium.webdriver.support.ui import Select

    table, topology, excluded = zoo_tables()
    path = tmp_path / "map.html"
    interactive.write(path, interactive.map_html(table, topology, excluded))
    _open(browser, path)
    ok = table[table["status"] == "ok"].reset_index(drop=True)
    Select(browser.find_element("id", "nnm-colour")).select_by_value("width")
    time.sleep(0.3)
    marker = browser.execute_script(
        "const m = document.getElementById('nnm-map')._fullData[0].marker;"
        "return [Array.from(m.color), m.colorbar.ticktext]"
    )
    assert [marker[1][c] for c in marker[0]] == ok["width"].astype(str).tolist()

    Select(browser.find_element("id", "nnm-which")).select_by_value("wasserstein")
    time.sleep(0.3)
    x = browser.execute_script("return document.getElementById('nnm-map').data[0].x")
    expected = topology.set_index("model_id").loc[ok["model_id"], "phate_1"]
    assert [None if np.isnan(v) else v for v in expected] == x


@pytest.mark.browser
def test_the_report_opens_on_the_run_and_the_workflow_map_holds_every_network(browser, mapped_zoo):
    import yaml
    from conftest import snakemake

    workdir, _ = mapped_zoo
    results = workdir / "results"
    report = (
        "--report",
        "results/report.html",
        "--report-metadata",
        "results/report_metadata.yaml",
    )
    snakemake(workdir, *report)
    browser.get((results / "report.html").as_uri())
    text = ""
    for _ in range(100):
        text = " ".join(browser.execute_script("return document.body.textContent").lower().split())
        if "networks" in text:
            break
        time.sleep(0.1)
    # the landing page: what was run, the headline numbers, where to read next (not the job graph)
    assert "trained a zoo of classifiers on digits" in text and "summary.png" in text
    headline = yaml.safe_load((results / "report_metadata.yaml").read_text())
    assert headline["networks"] == 5 and headline["diverged or failed"] == 1
    for key, value in headline.items():
        assert key.lower() in text and str(value) in text, key

    # the workflow's own interactive map: one point per network that trained ok
    _open(browser, results / "figures" / "map.html")
    positions = browser.execute_script(
        "return Array.from(document.getElementById('nnm-map')._fullLayout._plots.xy._scene"
        ".markerOptions[0].positions)"
    )
    drawn = np.asarray(positions, dtype=float).reshape(-1, 2)
    ok = pd.read_csv(results / "geometry" / "embedding.csv").query("status == 'ok'")
    assert len(drawn[np.isfinite(drawn).all(axis=1)]) == len(ok) == 4
