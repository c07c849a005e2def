"""The page's script (``static/app.js``) under Node with a stub DOM, fed the server's real ``/health``: which
inputs the page shows and what it sends. Skipped without Node; ``test_page_browser.py`` drives a real browser.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from html.parser import HTMLParser
from typing import Any

import pytest

from finsent_cli.serve.app import STATIC
from tests.helpers import HANG_GUARD_S

NODE = shutil.which("node")

HARNESS = r"""
const fs = require("fs"), vm = require("vm");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const elements = {};
function element(id) {
  if (!(id in elements)) elements[id] = {
    id, hidden: input.hidden.includes(id), required: false, disabled: false, value: input.values[id] || "",
    textContent: "", files: [], dataset: {}, style: {}, listeners: {},
    addEventListener(type, fn) { this.listeners[type] = fn; },
    classList: { toggle() {}, add() {}, remove() {} },
    querySelector(selector) { return element(id + " " + selector); },
    replaceChildren() {}, append() {}, setAttribute() {}, scrollIntoView() {},
  };
  return elements[id];
}
const sent = [];
let ready = null;
const context = {
  document: { getElementById: element, addEventListener(type, fn) { ready = fn; }, createElement: () => element("new") },
  fetch: async (path, options) => {
    sent.push({ path, body: options && options.body ? JSON.parse(options.body) : null });
    if (path === "/health" && input.health === null) throw new TypeError("Failed to fetch");
    const body = path === "/health" ? input.health : { results: [] };
    return { ok: true, status: 200, json: async () => body };
  },
  URLSearchParams, console,
};
vm.createContext(context);
vm.runInContext(fs.readFileSync(input.script, "utf8"), context);
(async () => {
  await ready();
  await element("predict-form").listeners.submit({ preventDefault() {} });
  const shown = (id) => ({ hidden: element(id).hidden, required: element(id).required });
  console.log(JSON.stringify({ "target-field": shown("target-field"), target: shown("target"), sent }));
})();
"""


class _HiddenIds(HTMLParser):
    """The ids of the page's elements that start hidden."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if "hidden" in named and named.get("id"):
            self.ids.append(str(named["id"]))


def _run_page(health: dict[str, Any] | None, typed_target: str) -> dict[str, Any]:
    """Load the page's script, let it read ``health`` (None: /health unreachable), type a headline and
    ``typed_target`` into the boxes, submit, and report the target input's state and what was sent."""
    if NODE is None:
        pytest.skip("needs Node.js to run the page's script")
    parser = _HiddenIds()
    parser.feed((STATIC / "index.html").read_text(encoding="utf-8"))
    stdin = {
        "script": str(STATIC / "app.js"), "hidden": parser.ids, "health": health,
        "values": {"texts": "Shares of Nokia fell 8%", "target": typed_target},
    }  # fmt: skip
    res = subprocess.run([NODE, "-e", HARNESS], check=False, input=json.dumps(stdin), capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _predict_body(page: dict[str, Any]) -> dict[str, Any]:
    return next(s["body"] for s in page["sent"] if s["path"] == "/v1/predict")


def test_a_sentence_model_page_hides_the_target_and_never_sends_one(client: Any) -> None:
    page = _run_page(client.get("/health").json(), typed_target="Nokia")  # e.g. the browser's autofill
    assert page["target-field"]["hidden"] is True and page["target"]["required"] is False
    assert _predict_body(page) == {"texts": ["Shares of Nokia fell 8%"], "target": None}


def test_a_target_model_page_asks_for_the_target_and_sends_it(make_client: Any, serve_clf: Any) -> None:
    targeted = dataclasses.replace(serve_clf, meta={**serve_clf.meta, "targets": True})
    page = _run_page(make_client(targeted).get("/health").json(), typed_target=" Nokia ")
    assert page["target-field"]["hidden"] is False and page["target"]["required"] is True
    assert _predict_body(page) == {"texts": ["Shares of Nokia fell 8%"], "target": "Nokia"}


def test_without_health_the_page_offers_the_target_as_optional() -> None:
    page = _run_page(None, typed_target="")
    assert page["target-field"]["hidden"] is False and page["target"]["required"] is False
    assert _predict_body(page)["target"] is None
