"""A real browser for tests: Debian's headless Chromium driven by selenium through the system
chromedriver (nothing is downloaded), and where tests leave what a person would look at.
FRAUD_TEST_CHROMIUM and FRAUD_TEST_CHROMEDRIVER point elsewhere (another Chromium build)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import ROOT

CHROMIUM = os.environ.get("FRAUD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FRAUD_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
# What works headless, as root, on a machine without a display or outside network.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1366,900",
)


def artifacts_dir() -> Path:
    """Screenshots and the like: FRAUD_TEST_ARTIFACTS, by default .state/test-artifacts."""
    folder = Path(os.environ.get("FRAUD_TEST_ARTIFACTS", ROOT / ".state" / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def require_chromium() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.skip(f"needs Debian's chromium and chromium-driver ({', '.join(missing)} missing)")


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A selenium WebDriver on a fresh profile folder; quit at exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    profile.mkdir(parents=True, exist_ok=True)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
