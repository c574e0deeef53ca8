"""Error bodies: JSON for programs, a small HTML page for browser navigations."""
import pytest

from lib.gateway import BROWSER_UA


def test_browser_gets_html(gateway, backend):
    response = gateway.get("nosuch1", backend.port, headers=[
        ("User-Agent", BROWSER_UA),
        ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("Sec-Fetch-Mode", "navigate"),
    ])
    assert response.status == 502, response
    assert (response.header("Content-Type") or "").startswith("text/html"), response
    text = response.text()
    assert "The sandbox was not found" in text
    assert "<html" in text.lower()
    assert int(response.header("Content-Length")) == len(response.body)


def test_browser_without_fetch_metadata_gets_html(gateway, backend):
    response = gateway.get("nosuch1", backend.port, headers=[("User-Agent", BROWSER_UA)])
    assert response.status == 502, response
    assert (response.header("Content-Type") or "").startswith("text/html"), response


@pytest.mark.parametrize("extra", [
    [("Accept", "application/json")],
    [("X-Requested-With", "XMLHttpRequest")],
    [("Sec-Fetch-Mode", "cors")],
], ids=["accept-json", "x-requested-with", "fetch-cors"])
def test_browser_api_calls_get_json(gateway, backend, extra):
    response = gateway.get("nosuch1", backend.port, headers=[("User-Agent", BROWSER_UA), *extra])
    assert response.status == 502, response
    assert (response.header("Content-Type") or "").startswith("application/json"), response
    assert response.json() == {**response.json(), "message": "The sandbox was not found", "code": 502,
                               "sandboxId": "nosuch1"}


def test_curl_gets_json(gateway, backend):
    response = gateway.curl("nosuch2", backend.port, "/")
    assert response.status == 502, response
    assert (response.header("Content-Type") or "").startswith("application/json"), response
    body = response.json()
    assert body["sandboxId"] == "nosuch2"
    assert body["message"] == "The sandbox was not found"
    assert body["code"] == 502


def test_html_page_escapes_what_it_shows(gateway, backend):
    response = gateway.request("<script>x</script>.sandbox.localhost", headers=[("User-Agent", BROWSER_UA)])
    assert response.status in (400, 421), response
    assert b"<script>x" not in response.body
