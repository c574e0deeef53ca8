"""A real Jupyter server (Debian's jupyter-notebook) behind a `localhost:${PORT}` mask, as a new
user runs one in a sandbox: Jupyter compares Origin with Host and refuses "cross-origin" API calls
and kernel WebSockets, so the gateway rewrites the request's own Origin to the masked origin
(DESIGN "What the sandbox receives"). A cell runs through the kernel WebSocket, first from Python
with a browser's fields, then from headless Chromium (DevTools protocol) in the notebook page."""
import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from lib.devtools import DevTools
from lib.http import HttpConnection
from lib.util import free_port, require, wait_for
from lib.websocket import WebSocket


@pytest.fixture
def jupyter(tmp_path):
    binary = shutil.which("jupyter-notebook")
    require(binary is not None, "jupyter-notebook is not installed (scripts/deps.sh test installs it)")
    port = free_port()
    home = tmp_path / "jupyter-home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"))
    log = open(tmp_path / "jupyter.log", "wb")
    process = subprocess.Popen([binary, "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--allow-root",
                                "--NotebookApp.token=", "--NotebookApp.password=", "--NotebookApp.port_retries=0",
                                f"--notebook-dir={home}"], stdout=log, stderr=subprocess.STDOUT, env=env)

    def ready():
        try:
            with HttpConnection(port, timeout=2) as connection:
                return connection.request("GET", "/api", host=f"localhost:{port}").status == 200
        except OSError:
            return False
    try:
        wait_for(ready, 60, 0.2, "jupyter-notebook to answer /api")
        yield port, tmp_path / "jupyter.log"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def run_cell(port, host, kernel, code, origin):
    """Runs code on the kernel through its channels WebSocket; returns the text/plain result."""
    with WebSocket(port, f"/api/kernels/{kernel}/channels", host, headers=[("Origin", origin)]) as socket:
        message_id = uuid.uuid4().hex
        socket.send_json({
            "header": {"msg_id": message_id, "username": "test", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = socket.recv_json()
            if message.get("parent_header", {}).get("msg_id") != message_id:
                continue
            if message["msg_type"] == "execute_result":
                return message["content"]["data"]["text/plain"]
            if message["msg_type"] == "error":
                raise AssertionError(message["content"])
    raise AssertionError("no execute_result in time")


def test_jupyter_behind_a_mask_runs_a_cell(gateway, redis, jupyter):
    port, log = jupyter
    redis.put("jup", mask_request_host="localhost:${PORT}")
    host = gateway.host("jup", port)
    origin = f"http://{host}"
    with gateway.connect() as connection:
        page = connection.request("GET", "/tree", host=host, headers=[("Accept", "text/html")])
        assert page.status == 200, page
        # The page's script sends the _xsrf cookie back as X-XSRFToken.
        xsrf = [value.split(";")[0].split("=", 1)[1] for name, value in page.headers
                if name.lower() == "set-cookie" and value.startswith("_xsrf=")][0]
        browser = [("Origin", origin), ("Cookie", f"_xsrf={xsrf}"), ("X-XSRFToken", xsrf)]
        api = connection.request("GET", "/api/kernelspecs", host=host, headers=browser)
        assert api.status == 200, (api, log.read_text()[-2000:])
        started = connection.request("POST", "/api/kernels", host=host, body=b"{}",
                                     headers=browser + [("Content-Type", "application/json")])
        assert started.status == 201, (started, log.read_text()[-2000:])
    kernel = json.loads(started.body)["id"]
    assert run_cell(gateway.port, host, kernel, "6 * 7", origin) == "42"
    assert "Blocking Cross Origin" not in log.read_text()


def test_chromium_runs_a_notebook_cell_behind_a_mask(gateway, redis, jupyter, tmp_path):
    chromium = shutil.which("chromium")
    require(chromium is not None, "chromium is not installed (scripts/deps.sh test installs it)")
    port, log = jupyter
    redis.put("jupb", mask_request_host="localhost:${PORT}")
    host = gateway.host("jupb", port)
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                "cells": [{"cell_type": "code", "id": "c1", "metadata": {}, "source": "", "outputs": [],
                           "execution_count": None}]}
    (tmp_path / "jupyter-home" / "cell.ipynb").write_text(json.dumps(notebook))
    browser = DevTools(chromium, tmp_path / "chromium-profile", f"http://{host}/notebooks/cell.ipynb")
    try:
        connected = ("typeof Jupyter !== 'undefined' && !!Jupyter.notebook && !!Jupyter.notebook.kernel && "
                     "Jupyter.notebook.kernel.is_connected()")
        wait_for(lambda: browser.evaluate(connected), 60, 0.5, "the notebook's kernel to connect")
        browser.evaluate("(function () { var cell = Jupyter.notebook.get_cell(0); cell.set_text('6 * 7'); "
                         "cell.execute(); return true; })()")
        output = ("(function () { var outputs = Jupyter.notebook.get_cell(0).output_area.outputs; "
                  "return outputs.length ? outputs[0].data['text/plain'] : null; })()")
        assert wait_for(lambda: browser.evaluate(output), 60, 0.5, "the cell's output") == "42"
    finally:
        browser.close()
    assert "Blocking Cross Origin" not in log.read_text()
