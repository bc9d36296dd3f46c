"""The web console in a real browser, on real services: upload and follow jobs, the system page,
the dead letters; keyboard, screen reader names and a phone's screen."""

import pytest
from playwright.sync_api import Page, expect

from harness.processes import PROJECT_DIR, wait_for
from harness.system import System
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.integration

SAMPLE = PROJECT_DIR / "test_images" / "sample.jpg"
CORRUPTED = PROJECT_DIR / "test_images" / "corrupted.jpg"
FINISH_S = 60_000


def open_console(page: Page, system: System) -> None:
    """The console's upload page, once its script has built the form (a click before that would submit
    the plain HTML form and reload the page)."""
    page.goto(system.api_url + "/")
    expect(page.get_by_role("group", name="resize")).to_be_visible()


def job_card(page: Page, name: str):
    return page.locator("#jobs > li").filter(has=page.get_by_role("heading", name=name, exact=True))


def test_upload_through_the_form_shows_the_job_move_and_its_result(system: System, page: Page) -> None:
    # The form knows each operation's parameters: the defaults are there, with their fields.
    open_console(page, system)
    page.get_by_label("Width").first.fill("320")
    page.get_by_label("Operation to add").select_option("filter")
    page.get_by_role("button", name="Add operation").click()
    page.get_by_role("group", name="filter").get_by_label("Type").select_option("sepia")
    expect(page.locator("#op-preview")).to_contain_text('"type":"sepia"')
    page.get_by_label("Images").set_input_files(SAMPLE)
    page.get_by_role("button", name="Upload", exact=True).click()

    card = job_card(page, "sample.jpg")
    expect(card.get_by_role("status")).to_have_text("completed", timeout=FINISH_S)
    result = card.get_by_role("img", name="Result of sample.jpg")
    expect(result).to_be_visible()
    assert result.evaluate("image => [image.naturalWidth, image.complete]") == [320, True]
    expect(card.get_by_role("link", name="Download the result")).to_be_visible()
    expect(card).to_contain_text("Result, 320×240 jpeg")
    job_id = card.get_attribute("data-job-id")
    assert system.status(job_id)["operations"][-1] == {"name": "filter", "type": "sepia", "radius": None}
    screenshot(page, "upload")


def test_corrupted_file_shows_failed_with_its_reason(system: System, page: Page) -> None:
    open_console(page, system)
    page.get_by_label("Or type them").fill("resize(width=100)")
    page.get_by_label("Images").set_input_files(CORRUPTED)
    page.get_by_role("button", name="Upload", exact=True).click()
    status = job_card(page, "corrupted.jpg").get_by_role("status")
    expect(status).to_contain_text("failed: truncated", timeout=FINISH_S)


def test_a_hostile_file_name_is_shown_as_text(system: System, page: Page) -> None:
    name = '<img src=x onerror="document.title=\'owned\'">.jpg'
    open_console(page, system)
    page.get_by_label("Images").set_input_files({"name": name, "mimeType": "image/jpeg", "buffer": SAMPLE.read_bytes()})
    page.get_by_role("button", name="Upload", exact=True).click()
    card = job_card(page, name)
    expect(card.get_by_role("status")).to_have_text("completed", timeout=FINISH_S)
    assert page.title() == "imgpipe console"
    assert page.locator("#jobs img[src='x']").count() == 0


def test_a_refused_upload_says_why(system: System, page: Page) -> None:
    open_console(page, system)
    page.get_by_label("Or type them").fill("melt(now=yes)")
    page.get_by_label("Images").set_input_files(SAMPLE)
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(job_card(page, "sample.jpg").get_by_role("status")).to_contain_text("refused: operations:")


def test_system_page_shows_the_queue_rise_while_workers_are_stopped_and_drain(make_system, page: Page) -> None:
    system = make_system(workers=(), notifier=False)
    for _ in range(4):
        assert system.upload(SAMPLE, operations="resize(width=64)").status_code == 202
    page.goto(system.api_url + "/#system")
    waiting = page.get_by_role("definition").nth(4)
    expect(page.get_by_text("Waiting in the work queue")).to_be_visible()
    expect(waiting).to_have_text("4", timeout=30_000)
    expect(page.locator("#depth-summary")).to_contain_text("work queue: 4")
    screenshot(page, "system")
    system.start_worker("worker-a")
    expect(waiting).to_have_text("0", timeout=FINISH_S)
    expect(page.locator("#workers")).to_contain_text("worker-a", timeout=30_000)
    expect(page.locator("#event-feed")).to_contain_text("completed", timeout=30_000)


def test_dead_letters_page_lists_and_replays(make_system, page: Page) -> None:
    system = make_system(workers=("worker-a",), notifier=False)
    job_id = system.upload(CORRUPTED, operations="resize(width=64)").json()["job_id"]
    assert system.wait_finished(job_id)["status"] == "failed"
    wait_for(lambda: system.vhost.message_count("images.jobs.dead") == 1, 30, "the dead letter")
    page.goto(system.api_url + "/#dead-letters")
    row = page.get_by_role("row").filter(has_text=job_id)
    expect(row).to_contain_text("truncated")
    screenshot(page, "dead-letters")
    page.get_by_role("button", name=f"Replay job {job_id}").click()
    expect(page.get_by_role("status").first).to_contain_text("Replayed 1")
    # It runs again (and, still corrupted, fails again): the replay reached the worker.
    wait_for(
        lambda: (s := system.status(job_id))["revision"] > 3 and s["status"] == "failed", 60, "the rerun"
    )


def test_keyboard_alone_reaches_every_page(system: System, page: Page) -> None:
    open_console(page, system)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    for _ in range(3):
        page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Dead letters")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Dead letters", level=2)).to_be_focused()
    expect(page.get_by_role("link", name="Dead letters")).to_have_attribute("aria-current", "page")


def test_the_console_fits_a_phone_screen(system: System, browser) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        for hash_ in ("#upload", "#system", "#dead-letters", "#storage"):
            page.goto(system.api_url + "/" + hash_)
            page.wait_for_load_state("networkidle") if hash_ == "#upload" else page.wait_for_timeout(500)
            width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], (hash_, width)
    finally:
        context.close()


def test_storage_page_shows_only_the_clients_objects_with_previews(make_system, page: Page) -> None:
    alice, bob = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef"
    system = make_system(
        workers=("worker-a",), notifier=False, AUTH_REQUIRED="true", API_KEYS=f"alice={alice},bob={bob}",
        STORAGE_CONSOLE_URL="http://localhost:9001",
    )
    jobs = {}
    for key, name in ((alice, "alices.jpg"), (bob, "bobs.jpg")):
        with system.client(key) as client:
            response = client.post(
                "/upload", files={"file": (name, SAMPLE.read_bytes())}, data={"operations": "resize(width=100)"}
            )
        jobs[name] = response.json()["job_id"]
        assert system.wait_finished(jobs[name], key=key)["status"] == "completed"

    page.goto(system.api_url + "/")
    page.get_by_text("API key", exact=True).click()
    page.get_by_label("API key, kept in this browser").fill(alice)
    page.get_by_role("button", name="Save key").click()
    page.get_by_role("link", name="Storage").click()
    cards = page.locator("#stored > li")
    expect(cards).to_have_count(1)
    card = cards.first
    expect(card.get_by_role("heading", name="alices.jpg")).to_be_visible()
    expect(card).to_contain_text(jobs["alices.jpg"])
    expect(card).to_contain_text("result, 100×75 jpeg")
    original = card.get_by_role("img", name="Original of alices.jpg")
    result = card.get_by_role("img", name="Result of alices.jpg")
    expect(result).to_be_visible()
    assert original.evaluate("image => image.decode().then(() => image.naturalWidth)") == 1600
    assert result.evaluate("image => image.decode().then(() => image.naturalWidth)") == 100
    expect(page.get_by_text("bobs.jpg")).to_have_count(0)
    expect(page.get_by_role("link", name="Open the object store's console")).to_have_attribute(
        "href", "http://localhost:9001"
    )
    screenshot(page, "storage")


def test_a_preset_upload_shows_every_variant_here_and_on_the_storage_page(make_system, page: Page) -> None:
    system = make_system(workers=("worker-a",), notifier=False, PRESETS_FILE=str(PROJECT_DIR / "presets.yaml"))
    open_console(page, system)
    page.get_by_label("Preset").select_option("avatar")
    page.get_by_label("Images").set_input_files(SAMPLE)
    page.get_by_role("button", name="Upload", exact=True).click()

    card = job_card(page, "sample.jpg")
    expect(card.get_by_role("status")).to_have_text("completed", timeout=FINISH_S)
    for name, side in (("small", 64), ("large", 256)):
        image = card.get_by_role("img", name=f"Result {name} of sample.jpg")
        expect(image).to_be_visible()
        assert image.evaluate("image => image.decode().then(() => image.naturalWidth)") == side
        expect(card).to_contain_text(f"Result {name}, {side}×{side} webp")
        expect(card.get_by_role("link", name=f"Download {name}")).to_be_visible()
    expect(card.get_by_role("button", name="Cancel the job of sample.jpg")).to_be_hidden()
    job_id = card.get_attribute("data-job-id")
    assert system.status(job_id)["preset"] == "avatar"

    page.get_by_role("link", name="Storage").click()
    stored = page.locator("#stored > li").filter(has_text=job_id)
    for name, side in (("small", 64), ("large", 256)):
        image = stored.get_by_role("img", name=f"Result {name} of sample.jpg")
        assert image.evaluate("image => image.decode().then(() => image.naturalWidth)") == side


def test_the_cancel_button_stops_a_queued_job_for_good(make_system, page: Page) -> None:
    system = make_system(workers=(), notifier=False)
    open_console(page, system)
    page.get_by_label("Images").set_input_files(SAMPLE)
    page.get_by_role("button", name="Upload", exact=True).click()
    card = job_card(page, "sample.jpg")
    expect(card.get_by_role("status")).to_have_text("queued", timeout=30_000)
    cancel = card.get_by_role("button", name="Cancel the job of sample.jpg")
    expect(cancel).to_be_enabled()
    cancel.click()
    expect(card.get_by_role("status")).to_have_text("cancelled", timeout=30_000)
    expect(cancel).to_be_hidden()
    job_id = card.get_attribute("data-job-id")
    # A worker that starts now acks the job without running it.
    system.start_worker("worker-a")
    wait_for(lambda: "cancelled by its client; acking without running it" in system.logs(), 60, "the worker's ack")
    status = system.status(job_id)
    assert (status["status"], status["result"]) == ("cancelled", None)


@pytest.mark.parametrize("path, operation", [("/docs", "/upload"), ("/redoc", "/upload")])
def test_api_docs_work_with_the_network_cut_off(system: System, browser, path: str, operation: str) -> None:
    context = browser.new_context()
    elsewhere: list[str] = []

    def only_the_api(route) -> None:
        if route.request.url.startswith(system.api_url):
            route.continue_()
        else:
            elsewhere.append((route.request.resource_type, route.request.url))
            route.abort("internetdisconnected")

    context.route("**/*", only_the_api)
    try:
        page = context.new_page()
        page.goto(system.api_url + path)
        expect(page.get_by_text(operation, exact=True).first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("/jobs/{job_id}/events", exact=True).first).to_be_visible()
        # Nothing the page needs comes from elsewhere (ReDoc's footer asks for its maker's logo).
        assert [(kind, url) for kind, url in elsewhere if kind != "image"] == []
    finally:
        context.close()
