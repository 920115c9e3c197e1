"""Headless Chromium for tests, through selenium and Debian's chromedriver.

    with browser.chromium(tmp_path) as driver:
      driver.get(page_url)

Tests that need a browser call `skip_reason()` first (or use the
`require_browser` helper), so they skip with a clear message where Chromium,
chromedriver or selenium are not installed (`.ci/run` installs them:
`apt-get install chromium chromium-driver`, `pip install -e .[test]`).
"""

import contextlib
import importlib.util
import os
import shutil
from typing import Iterator, Optional

import pytest

# Debian's package names first, then the names other systems use.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome",
                  "google-chrome-stable")
CHROMEDRIVER_NAMES = ("chromedriver",)
WINDOW_SIZE = (1280, 1000)
# A fresh profile, no background traffic: the tests see only the page.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions",
    f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}",
    "--hide-scrollbars", "--force-device-scale-factor=1",
)


def _which(names) -> Optional[str]:
  return next((shutil.which(name) for name in names if shutil.which(name)),
              None)


def skip_reason() -> Optional[str]:
  """Why no browser test can run here, or None when everything is present."""
  if importlib.util.find_spec("selenium") is None:
    return ("selenium is not installed (pip install -e '.[test]' installs "
            "it)")
  if _which(CHROMIUM_NAMES) is None:
    return ("no Chromium found (apt-get install chromium chromium-driver; "
            f"looked for {', '.join(CHROMIUM_NAMES)})")
  if _which(CHROMEDRIVER_NAMES) is None:
    return "no chromedriver found (apt-get install chromium-driver)"
  return None


def require_browser() -> None:
  """Skips the calling test when `skip_reason()` gives a reason."""
  reason = skip_reason()
  if reason:
    pytest.skip(f"browser test skipped: {reason}")


@contextlib.contextmanager
def chromium(profile_root: str, page_load_timeout_s: float = 60
             ) -> Iterator["selenium.webdriver.Chrome"]:  # noqa: F821
  """A headless Chromium WebDriver with a fresh profile under `profile_root`.

  The driver is always quit on exit, so no browser outlives the test.
  """
  # Imported here: importing this module must work without selenium.
  # pylint: disable=g-import-not-at-top
  from selenium import webdriver
  from selenium.webdriver.chrome import service as chrome_service
  # pylint: enable=g-import-not-at-top

  options = webdriver.ChromeOptions()
  options.binary_location = _which(CHROMIUM_NAMES)
  for flag in CHROMIUM_FLAGS:
    options.add_argument(flag)
  profile = os.path.join(str(profile_root), "chromium-profile")
  os.makedirs(profile, exist_ok=True)
  options.add_argument(f"--user-data-dir={profile}")
  service = chrome_service.Service(
      executable_path=_which(CHROMEDRIVER_NAMES),
      log_output=os.path.join(str(profile_root), "chromedriver.log"))
  driver = webdriver.Chrome(options=options, service=service)
  try:
    driver.set_page_load_timeout(page_load_timeout_s)
    yield driver
  finally:
    driver.quit()


def full_page_screenshot(driver, path: str, max_height: int = 6000) -> str:
  """Resizes the window to the page's height (capped) and saves a PNG."""
  height = driver.execute_script(
      "return Math.max(document.body.scrollHeight, "
      "document.documentElement.scrollHeight);")
  driver.set_window_size(WINDOW_SIZE[0], min(int(height) + 40, max_height))
  driver.save_screenshot(path)
  return path
