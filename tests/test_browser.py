"""End to end in a real headless Chromium: draw a 3 with the mouse, read the answer, in
the page's two languages."""

import shutil
import threading

import pytest

from recognize_digits.serve import make_server

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


TITLES = {"en-US": ("Draw a digit", "中文"), "zh-CN": ("手写一个数字", "English")}


KEPT = {"en-US": "kept as a 5 (", "zh-CN": "已保存为 5（"}


@pytest.mark.parametrize("locale", list(TITLES))
def test_draw_a_3_in_chromium(url, corrections, locale, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 900, "height": 560}, locale=locale)
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
        browser.close()
