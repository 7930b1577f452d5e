"""The collection page in the system Chromium: picker and drag-and-drop uploads with a result
per file, the document list refreshing itself, deleting from the list."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.pipelines.docs import samples

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
]


@pytest.fixture
def page(live_server, user):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop makes Django refuse sync ORM calls
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.set_default_timeout(20_000)
            page.js_errors = []
            page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
            page.goto(f"{live_server.url}/accounts/login/")
            page.fill("input[name=username]", user.username)
            page.fill("input[name=password]", user.raw_password)
            page.locator("main form button[type=submit]").first.click()
            page.wait_for_url(lambda url: "/accounts/login/" not in url)
            yield page
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def test_picker_upload_shows_each_file_and_refreshes_the_list(page, live_server, make_collection, tmp_path):
    collection = make_collection()
    files = {
        "guide.md": samples.MARKDOWN.encode(),
        "report.pdf": samples.make_pdf(["One", "Two"]),
        "empty.txt": b"",
        "locked.pdf": samples.make_encrypted_pdf(["x"]),
    }
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    page.goto(f"{live_server.url}/knowledge/{collection.pk}/")
    page.set_input_files("#file-input", paths)
    page.wait_for_function(
        "document.querySelectorAll('#upload-list .upload-row').length === 4 && "
        "!document.querySelector('#upload-list .upload-row.waiting')"
    )
    rows = {
        row.locator(".up-name").inner_text(): row for row in page.locator("#upload-list .upload-row").all()
    }
    assert rows["guide.md"].locator(".badge").inner_text() == "added"
    assert rows["report.pdf"].locator(".badge").inner_text() == "added"
    assert "empty (0 bytes)" in rows["empty.txt"].inner_text()
    assert "password" in rows["locked.pdf"].inner_text()
    assert "2 added" in page.locator(".upload-summary").inner_text()
    # the document table below refreshes itself (htmx), no reload
    page.wait_for_selector("#documents >> text=report.pdf")
    assert page.locator("#documents tbody tr").count() == 3  # the empty file was never stored
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("#documents tr", has_text="guide.md").locator("button", has_text="Delete").click()
    page.wait_for_function(
        "!document.querySelector('#documents') || "
        "!document.querySelector('#documents').innerText.includes('guide.md')"
    )
    assert page.js_errors == []


def test_drag_and_drop_uploads(page, live_server, make_collection):
    collection = make_collection()
    page.goto(f"{live_server.url}/knowledge/{collection.pk}/")
    page.evaluate("""() => {
        const dt = new DataTransfer();
        dt.items.add(new File(["# Dropped\\n\\nA dropped note."], "dropped.md", {type: "text/markdown"}));
        dt.items.add(new File(["not a pdf"], "fake.pdf", {type: "application/pdf"}));
        const zone = document.getElementById("dropzone");
        for (const type of ["dragenter", "dragover", "drop"]) {
            zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
        }
    }""")
    page.wait_for_function("document.querySelectorAll('#upload-list .upload-row.created').length === 2")
    assert "plain text" in page.locator("#upload-list").inner_text()  # fake.pdf was read by content
    page.wait_for_selector("#documents >> text=dropped.md")
    assert page.js_errors == []
