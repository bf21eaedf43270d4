"""Headless Chromium from Debian's packages, driven by Selenium (for the interactive map's tests
and bench/interactive.py). `.ci/browser.sh` installs it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Offline, no profile, no GPU; WebGL on the CPU through SwiftShader.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--window-size=1400,900",
)


def installed() -> bool:
    """Whether Debian's chromium and chromedriver are both here."""
    return all(shutil.which(p) is not None for p in (CHROMIUM, CHROMEDRIVER))


@contextmanager
def chromium() -> Iterator:
    """A Selenium driver of a fresh headless Chromium (own empty profile), quit afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="nnm-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


def pixels(driver, xy: np.ndarray) -> np.ndarray:
    """Viewport pixels of map coordinates, through the plot's own axes."""
    return np.array(
        driver.execute_script(
            """const gd = document.getElementById('nnm-map'), L = gd._fullLayout;
            const box = gd.getBoundingClientRect();
            return arguments[0].map(([x, y]) => [box.left + L.xaxis._offset + L.xaxis.l2p(x),
                                                  box.top + L.yaxis._offset + L.yaxis.l2p(y)]);""",
            xy.tolist(),
        )
    )
