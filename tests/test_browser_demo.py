"""The demo page of a running LocalModelServer, driven in headless Chromium.

Types sentences into the page, reads the highlighted entities and the score
table from the DOM, and compares them with `NerClient.predict` over REST for
the same text; then checks the error messages. Screenshots are saved under
the test's tmp folder. Skips without Chromium, chromedriver or selenium.
"""

import pytest

from serving.client import client
from serving.demo import endpoint as demo
from serving.server import local_server
from tests import browser
from tests import serving_fixtures

TIMEOUT_S = 60.0
# A score shown with 3 places is within half a unit of the client's.
SHOWN_SCORE_TOLERANCE = 0.5e-3 + 1e-9

_READ_MARKS = """
return Array.from(document.querySelectorAll('#highlighted mark.ent')).map(
    m => [m.dataset.type, m.querySelector('.ent-text').textContent,
          Number(m.dataset.start), Number(m.dataset.end)]);
"""
_READ_ROWS = """
return Array.from(document.querySelectorAll('#entities tbody tr')).map(
    row => Array.from(row.cells).map(cell => cell.textContent.trim()));
"""
# The highlighted text without the type labels: the text as typed.
_READ_PLAIN_TEXT = """
const copy = document.getElementById('highlighted').cloneNode(true);
copy.querySelectorAll('.ent-type').forEach(label => label.remove());
return copy.textContent;
"""
_READ_LEGEND = """
return Array.from(document.querySelectorAll('#legend .item')).map(
    item => [item.dataset.type, Number(item.querySelector('.n').textContent)]);
"""
# ChromeDriver types only characters of the Basic Multilingual Plane.
_SET_TEXT = """
arguments[0].value = arguments[1];
arguments[0].dispatchEvent(new Event('input'));
"""


def _state(driver):
  return driver.execute_script("return document.querySelector('main')"
                               ".dataset.state;")


def _submit(driver, text, typed=True):
  """Enters `text`, clicks "Find entities", waits for the answer's state."""
  # pylint: disable-next=g-import-not-at-top
  from selenium.webdriver.support import ui
  box = driver.find_element("id", "text")
  box.clear()
  if typed:
    box.send_keys(text)
  else:
    driver.execute_script(_SET_TEXT, box, text)
  assert box.get_attribute("value") == text
  driver.execute_script("document.querySelector('main').dataset.state = "
                        "'submitted';")
  driver.find_element("id", "submit").click()
  ui.WebDriverWait(driver, TIMEOUT_S).until(
      lambda d: _state(d) in ("done", "error"))
  return _state(driver)


def _check_result(driver, text, expected):
  """The page's marks, table and legend show the client's `expected`."""
  assert driver.find_element("id", "result").is_displayed()
  assert not driver.find_element("id", "message").is_displayed()
  assert driver.execute_script(_READ_MARKS) == [
      [e["type"], e["text"], e["start"], e["end"]] for e in expected]
  assert driver.execute_script(_READ_PLAIN_TEXT) == text
  rows = driver.execute_script(_READ_ROWS)
  assert [row[:4] for row in rows] == [
      [str(index + 1), e["type"], e["text"], f"{e['start']}\u2013{e['end']}"]
      for index, e in enumerate(expected)]
  for row, entity in zip(rows, expected):
    assert abs(float(row[4]) - entity["score"]) <= SHOWN_SCORE_TOLERANCE
  counts = dict(driver.execute_script(_READ_LEGEND))
  assert counts == {entity_type: sum(e["type"] == entity_type
                                     for e in expected)
                    for entity_type in ("LOC", "ORG", "PER")}


def _check_error(driver, message):
  assert driver.find_element("id", "message").is_displayed()
  assert not driver.find_element("id", "result").is_displayed()
  assert driver.find_element(
      "css selector", "#message .message-text").text == message
  assert driver.find_element(
      "css selector", "#message .title").text == (
          "Could not tag the text (HTTP 400)")


@pytest.fixture(scope="module")
def served():
  return serving_fixtures.served_model()


def test_demo_page_shows_the_clients_entities(served, tmp_path):
  browser.require_browser()
  texts = [
      # Longer than one window: merged windows, as the client merges them.
      (serving_fixtures.PREDICT[2], True),
      # Latin words split into word-pieces, spaces kept.
      (serving_fixtures.PREDICT[3], True),
      # A character outside the BMP before the entities: offsets count code
      # points in Python and in the page.
      ("𠀀张三在北京工作。", False),
  ]
  with local_server.LocalModelServer("ner", served["export_dir"],
                                     port=0, mount=demo
                                     ) as server, client.NerClient(
                                         f"127.0.0.1:{server.rest_port}",
                                         "ner", protocol="rest",
                                         export_dir=served["export_dir"],
                                         timeout_s=TIMEOUT_S) as ner, \
      browser.chromium(tmp_path) as driver:
    driver.get(f"http://127.0.0.1:{server.rest_port}/")
    assert driver.title == "NER demo: ner"
    assert _state(driver) == "idle"
    assert driver.find_element("id", "model-version").text == "version 1"
    # Self-contained: the page fetched nothing to show itself.
    assert driver.execute_script(
        "return performance.getEntriesByType('resource').length;") == 0
    for index, (text, typed) in enumerate(texts):
      assert _submit(driver, text, typed) == "done"
      expected = ner.predict([text])[0]
      assert expected, text  # the comparison is not vacuous
      _check_result(driver, text, expected)
      browser.full_page_screenshot(driver, str(tmp_path / f"demo_{index}.png"))
    # The only requests: the endpoint, once per text.
    assert driver.execute_script(
        "return performance.getEntriesByType('resource').map("
        "e => new URL(e.name).pathname);") == [demo.ENTITIES_PATH] * len(texts)

    assert _submit(driver, "  ") == "error"
    _check_error(driver, "The text is empty: type a sentence to tag.")
    browser.full_page_screenshot(driver, str(tmp_path / "demo_error.png"))
    assert _submit(driver, "京" * (demo.MAX_TEXT_CHARS + 1),
                   typed=False) == "error"
    _check_error(driver, "The text has 5,001 characters; the demo tags at "
                 "most 5,000. Shorten it, or tag long documents with "
                 "python -m serving.client --input_file.")
    assert "over" in driver.find_element("id", "char-count").get_attribute(
        "class")
    # The page recovers: the next text is tagged again.
    assert _submit(driver, texts[0][0]) == "done"
    _check_result(driver, texts[0][0], ner.predict([texts[0][0]])[0])

  for name in ("demo_0.png", "demo_1.png", "demo_2.png", "demo_error.png"):
    with open(tmp_path / name, "rb") as reader:
      assert reader.read(8) == b"\x89PNG\r\n\x1a\n"
