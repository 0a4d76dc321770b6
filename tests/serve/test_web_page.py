"""The web chat page in a real browser (Playwright driving Debian's chromium): pick a model, send a message,
watch the reply stream, stop it; Chinese in and out."""

from __future__ import annotations

import os
import re
import time

import pytest

CHROMIUM = "/usr/bin/chromium"
pytest_plugins = ["live_server"]  # the session's runs and server (tests/serve/live_server.py)
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM} "
                                 "(apt-get install chromium; .ci/run installs it)")]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page()
    page.set_default_timeout(20_000)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{server.url}/")
    page.wait_for_function("document.querySelectorAll('#model option').length === 3")
    yield page
    page.close()
    assert errors == []  # no script error on the page


def send(page, model: str, text: str, temperature: str = "0") -> None:
    page.select_option("#model", model)
    page.fill("#temperature", temperature)
    page.fill("#input", text)
    page.press("#input", "Enter")


def wait_reply_done(page) -> str:
    page.wait_for_selector(".message.assistant:not(.streaming)", state="attached")
    return page.locator(".message.assistant").last.inner_text()


def test_the_page_lists_the_models_and_answers(page):
    assert page.eval_on_selector_all("#model option", "os => os.map(o => o.value)") == ["lm", "chatbot", "slow"]
    send(page, "chatbot", "hello")
    assert wait_reply_done(page) == "hi there"
    send(page, "chatbot", "thank you")  # a second turn
    page.wait_for_function("document.querySelectorAll('.message.assistant:not(.streaming)').length === 2")
    assert page.locator(".message").all_inner_texts() == ["hello", "hi there", "thank you", "you are welcome"]
    page.click("#reset")
    assert page.locator(".message").count() == 0


def test_chinese_goes_in_and_comes_back(page):
    user, reply = "你好", "你好呀 朋友"  # one of the chatbot's exchanges
    send(page, "chatbot", user)
    assert wait_reply_done(page) == reply
    assert page.locator(".message.user").inner_text() == user


def test_a_reply_streams_and_the_stop_button_stops_it(page, server):
    send(page, "slow", "hello", temperature="1")
    bubble = page.locator(".message.assistant")
    page.wait_for_function("document.querySelector('.message.assistant').textContent.length > 20")
    assert "streaming" in bubble.get_attribute("class")
    first = len(bubble.inner_text())
    page.wait_for_function(f"document.querySelector('.message.assistant').textContent.length > {first + 20}")
    assert page.is_enabled("#stop") and page.is_disabled("#send")
    page.click("#stop")
    page.wait_for_selector(".message.assistant:not(.streaming)", state="attached")
    assert page.inner_text("#status") == "stopped"
    stopped = bubble.inner_text()
    time.sleep(0.3)
    assert bubble.inner_text() == stopped and re.search(r"\w", stopped)  # nothing more arrives
    assert page.is_disabled("#stop") and page.is_enabled("#send")
    assert server.wait_idle("slow") == {"active_slots": 0, "queue_depth": 0}  # the server stopped decoding it
