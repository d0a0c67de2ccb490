"""The web page in a real headless browser (Debian's chromium and chromium-driver, driven by selenium): pick a video,
ask two questions, see both answers and their keyframe timelines."""

from pathlib import Path

import pytest

from llava.session import VideoSession

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
QUESTIONS = ("What colour is the background when the white bar is at the left?", "And at the end?")
TOKENS = 8  # answer length asked on the page
WAIT = 120  # seconds: a bound for a stuck page, never reached by a working one


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.is_file() and DRIVER.is_file()):
        pytest.skip(f"{CHROMIUM} and {DRIVER} are needed (Debian: apt-get install chromium chromium-driver; "
                    ".ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    yield driver
    driver.quit()


def test_two_questions_get_answers_and_timelines(vilamp_server, tiny_model, browser, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    _, model, processor, _ = tiny_model
    session = VideoSession(model, processor, vilamp_server.video)
    expected = [session.ask(question, max_new_tokens=TOKENS).text for question in QUESTIONS]

    wait = WebDriverWait(browser, WAIT, ignored_exceptions=[StaleElementReferenceException])
    browser.get(vilamp_server.url + "/")
    status = browser.find_element(By.ID, "status")
    wait.until(lambda _: "API key" in status.text)  # the page's first look at the server, without the key: 401
    browser.find_element(By.ID, "key").send_keys(vilamp_server.key, Keys.TAB)  # the key's change reloads the list
    tokens = browser.find_element(By.ID, "tokens")
    tokens.clear()
    tokens.send_keys(str(TOKENS))
    wait.until(lambda _: "video(s) on the server" in status.text)
    Select(browser.find_element(By.ID, "videos")).select_by_visible_text("clip.mp4")
    for number, question in enumerate(QUESTIONS, start=1):
        wait.until(ready.element_to_be_clickable((By.ID, "question"))).send_keys(question)
        browser.find_element(By.ID, "send").click()
        wait.until(lambda _: len(browser.find_elements(By.CSS_SELECTOR, ".turn.assistant")) == number)
    answers = browser.find_elements(By.CSS_SELECTOR, ".turn.assistant")
    errors = [turn.get_attribute("textContent") for turn in browser.find_elements(By.CSS_SELECTOR, ".turn.error")]
    assert not errors, (errors, browser.find_element(By.ID, "status").text)
    assert [a.find_element(By.CSS_SELECTOR, ".text").get_attribute("textContent") for a in answers] == expected
    for answer in answers:
        assert len(answer.find_elements(By.CSS_SELECTOR, "svg.timeline circle.keyframe")) == 8
        assert "keyframes (8 of 12 sampled frames)" in answer.find_element(By.CSS_SELECTOR, ".meta").text
    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
