"""Headless Chromium for tests, driven by selenium through Debian's
``chromium`` and ``chromium-driver`` (``make test`` installs them); selenium
never downloads anything (the driver's path is given, so Selenium Manager is
skipped).

Selenium is synchronous: :class:`Page` runs each call in a thread
(``asyncio.to_thread``) so the gateway under test keeps serving in the
test's event loop meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARGUMENTS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1000,900",
)  # fmt: skip


def start_chromium(profile: Path) -> WebDriver:
    """Headless Chromium with a fresh profile in ``profile``; fails the test
    (never skips) when Chromium or its driver is missing."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(
            f"browser tests need {' and '.join(missing)}: `make test` installs them "
            "(apt-get install chromium chromium-driver)",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile / "chromedriver.log"))
    return webdriver.Chrome(service=service, options=options)


class Page:
    """The browser's one tab, driven from async tests."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    async def open(self, url: str) -> None:
        await asyncio.to_thread(self.driver.get, url)

    async def js(self, script: str, *args: Any) -> Any:
        """``script`` (a function body: ``return ...``) run in the page."""
        return await asyncio.to_thread(self.driver.execute_script, script, *args)

    async def click(self, element_id: str) -> None:
        await self.js("document.getElementById(arguments[0]).click()", element_id)

    async def keys(self, element_id: str, *keys: str) -> None:
        """Type ``keys`` (text, or ``selenium.webdriver.Keys``) into the element."""
        element = await asyncio.to_thread(self.driver.find_element, By.ID, element_id)
        await asyncio.to_thread(element.send_keys, *keys)

    async def text(self, element_id: str) -> str:
        """The element's ``textContent`` (exact, unlike WebDriver's rendered text)."""
        value: str = await self.js(
            "return document.getElementById(arguments[0]).textContent", element_id
        )
        return value

    async def until(self, script: str, *args: Any, timeout_s: float = 20.0) -> Any:
        """Poll ``script`` until it returns a truthy value; that value. On
        timeout, fails showing the page's ``#status`` and ``#error``."""
        try:
            async with asyncio.timeout(timeout_s):
                while not (value := await self.js(script, *args)):
                    await asyncio.sleep(0.02)
        except TimeoutError:
            shown = await self.js(
                "return ['status', 'error', 'result'].map((id) => "
                "[id, document.getElementById(id)?.textContent])"
            )
            message = f"no {script!r} in {timeout_s} s; page: {json.dumps(shown)}"
            raise AssertionError(message) from None
        return value
