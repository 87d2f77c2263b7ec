"""End to end in a real headless Chromium: draw a 3 with the mouse, read the answer, in
the page's two languages; and what the page says before anything is drawn, or when the
server refuses the drawing."""

import json
import shutil
import threading

import pytest

from recognize_digits.deploy.serve import make_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                "(.ci/run installs it)")

# A 3 as two strokes on the 280x280 canvas: an upper bow, then a lower one.
STROKES = [
    [(80, 60), (120, 40), (170, 45), (195, 75), (185, 110), (150, 135), (125, 140)],
    [(140, 138), (180, 150), (205, 185), (195, 225), (155, 245), (110, 245), (75, 225)],
]


@pytest.fixture(scope="module")
def corrections(tmp_path_factory):
    return tmp_path_factory.mktemp("served") / "corrections"


@pytest.fixture(scope="module")
def url(trained_cnn, corrections):
    server = make_server(trained_cnn[0], port=0, corrections=corrections)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://%s:%d/" % server.server_address[:2]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


VIEWPORT = {"width": 1100, "height": 560}  # the pad, the 28x28 beside it and the answer
TITLES = {"en-US": ("Draw a digit", "中文"), "zh-CN": ("手写一个数字", "English")}


KEPT = {"en-US": "kept as a 5 (", "zh-CN": "已保存为 5（"}


@pytest.mark.parametrize("locale", list(TITLES))
def test_draw_a_3_in_chromium(url, corrections, browser, locale, tmp_path):
    page = browser.new_page(viewport=VIEWPORT, locale=locale)
    page.goto(url)
    title, switch = TITLES[locale]
    assert page.locator("h1").text_content() == title
    assert page.locator("#lang").text_content() == switch  # the other language, visible
    other = [t for loc, (t, _) in TITLES.items() if loc != locale][0]
    page.click("#lang")
    assert page.locator("h1").text_content() == other
    page.click("#lang")
    assert page.locator("h1").text_content() == title
    box = page.locator("#pad").bounding_box()
    for stroke in STROKES:
        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=4)
        page.mouse.up()
    # the page answers after every request; wait until the last drawing is answered
    page.wait_for_function("document.getElementById('digit').textContent !== ''")
    page.wait_for_timeout(1500)
    assert page.locator("#digit").text_content() == "3"
    assert page.locator("#error").text_content() == ""
    bars = [page.locator(f"#p{d}").text_content() for d in range(10)]
    assert all(b.endswith("%") for b in bars)
    # say it is another digit: the drawing is kept as one, for finetune --images
    before = len(list(corrections.glob("5/*.png")))
    page.click("#correct5")
    page.wait_for_function("document.getElementById('kept').textContent !== ''")
    assert page.locator("#kept").text_content().startswith(KEPT[locale])
    assert len(list(corrections.glob("5/*.png"))) == before + 1
    page.screenshot(path=str(tmp_path / "draw.png"))  # as docs/draw.png was made
    assert page.locator("#clear").text_content() == ("清除" if locale == "zh-CN" else "Clear")
    assert (tmp_path / "draw.png").read_bytes()[:4] == b"\x89PNG"
    page.click("#clear")
    assert page.locator("#digit").text_content() == ""
    page.close()


PROMPTS = {"en-US": "Draw a digit here (0–9)", "zh-CN": "在这里写一个数字（0–9）"}
BLANK = {"en-US": "no digit found: the pad is blank; draw a digit first",
         "zh-CN": "没有找到数字：画板是空的，请先写一个数字"}
ERROR = "document.getElementById('error').textContent"


@pytest.mark.parametrize("locale", list(PROMPTS))
def test_before_drawing_and_when_refused_the_page_speaks_its_language(url, browser, locale):
    page = browser.new_page(viewport=VIEWPORT, locale=locale)
    page.goto(url)
    prompt = page.locator("#prompt")
    assert prompt.is_visible() and prompt.text_content() == PROMPTS[locale]
    # the empty 28x28 looks like the empty pad: one black square beside the other
    look = """id => { const s = getComputedStyle(document.getElementById(id));
                      return [s.width, s.height, s.backgroundColor, s.borderStyle,
                              s.borderWidth, s.borderRadius]; }"""
    assert page.evaluate(look, "seen") == page.evaluate(look, "pad")
    # a blank pad sent: the server says "no digit found ..." in English, the page in its
    # own language, for a prediction as for a drawing to keep
    page.evaluate("predict()")
    page.wait_for_function(f"{ERROR} !== ''")
    assert page.locator("#error").text_content() == BLANK[locale]
    page.click("#correct5")
    page.wait_for_function("document.getElementById('kept').textContent !== ''")
    assert page.locator("#kept").text_content() == BLANK[locale]
    other = [loc for loc in BLANK if loc != locale][0]
    page.click("#lang")  # the button re-words what is shown
    assert page.locator("#error").text_content() == BLANK[other]
    assert page.locator("#prompt").text_content() == PROMPTS[other]
    page.click("#lang")
    # a code the page does not know: the server's own words
    page.route("**/predict", lambda route: route.fulfill(
        status=400, content_type="application/json",
        body=json.dumps({"error": "something new went wrong", "code": "something_new"})))
    page.evaluate("predict()")
    page.wait_for_function(f"{ERROR} === 'something new went wrong'")
    page.unroute("**/predict")
    # drawing takes the prompt away; clearing brings it back
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + 140, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + 140, box["y"] + 220, steps=4)
    page.mouse.up()
    assert not prompt.is_visible()
    page.click("#clear")
    assert prompt.is_visible()
    page.close()
