"""Headless Chromium (Debian's chromium + chromium-driver) driving a live NeuronScope server."""

from __future__ import annotations

import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from flask import Flask

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars",
)
INSTALL_HINT = (
    "no Chromium found: `make test` installs Debian's chromium and chromium-driver with apt-get "
    "when run as root; elsewhere install them (or set CHROMIUM / CHROMEDRIVER)"
)


def find_chromium() -> tuple[str, str] | None:
    """Paths of the Chromium binary and its chromedriver, or ``None`` when either is missing."""
    browser = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def start_chromium(profile: Path, size: tuple[int, int] = (1280, 800)):
    """A Selenium-driven headless Chromium with a fresh profile; browser console logs kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = find_chromium()
    if paths is None:
        raise RuntimeError(INSTALL_HINT)
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))
    driver.set_window_size(*size)
    return driver


@contextmanager
def live_server(app: Flask) -> Iterator[str]:
    """Serve ``app`` with waitress on a free port of 127.0.0.1; yields the base URL."""
    from waitress import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=5)
