"""Tests for charrnn.report.activations: the text properties, the unit correlations and the
activation page's HTML, parsed, with its embedded JSON compared with the model's arrays."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from numpy.testing import assert_allclose

from charrnn import CharRNNGenerator
from charrnn.report.activations import (
    PROPERTIES,
    text_properties,
    unit_correlations,
    write_activation_page,
)

TEXT = 'He said "stop (now)" and left.\n<b>Then</b> & "go".\n' * 12


@pytest.fixture(scope="module", params=["lstm", "gru"])
def model(request):
    return CharRNNGenerator(
        cell=request.param,
        hidden_size=8,
        num_layers=2,
        seq_length=16,
        batch_size=4,
        max_iter=1,
        validation_fraction=0,
        random_state=0,
    ).fit(TEXT)


class _Page(HTMLParser):
    """Every tag with its attributes, and the text of each script element."""

    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self._script = [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = (dict(attrs), [])

    def handle_data(self, data):
        if self._script is not None:
            self._script[1].append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script[0], "".join(self._script[1])))
            self._script = None


def _parse(path):
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    data = [json.loads(text) for attrs, text in page.scripts if attrs.get("id") == "data"]
    assert len(data) == 1
    return page, data[0]


def _unit_values(state: dict, n: int) -> np.ndarray:
    """(n, H) activations back from the page's base64 int8 and per-unit scales."""
    q = np.frombuffer(base64.b64decode(state["data"]), dtype=np.int8).reshape(-1, n)
    return (q / 127.0 * np.array(state["scale"])[:, None]).T


def test_text_properties():
    props = text_properties('a"b(c)"\nxy')
    col = {name: props[:, j] for j, name in enumerate(PROPERTIES)}
    assert col["inside quotes"].tolist() == [0, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    assert col["inside brackets"].tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    assert col["position in line"].tolist() == [1, 2, 3, 4, 5, 6, 7, 0, 1, 2]
    assert col["after a newline"].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]


def test_unit_correlations_are_pearson_and_zero_for_constants():
    rng = np.random.default_rng(0)
    states = rng.standard_normal((50, 3))
    states[:, 2] = 0.5  # a constant unit
    props = np.column_stack([states[:, 0] * 2 + rng.standard_normal(50), np.ones(50)])
    corr = unit_correlations(states, props)
    assert corr.shape == (3, 2)
    assert corr[0, 0] == pytest.approx(np.corrcoef(states[:, 0], props[:, 0])[0, 1])
    assert corr[1, 0] == pytest.approx(np.corrcoef(states[:, 1], props[:, 0])[0, 1])
    assert corr[2].tolist() == [0.0, 0.0] and corr[:, 1].tolist() == [0.0, 0.0, 0.0]


def test_the_page_embeds_the_models_arrays(model, tmp_path):
    text = TEXT[:200]
    summary = write_activation_page(model, text, tmp_path / "page.html")
    assert summary.shown_chars == summary.total_chars == 200 and summary.message is None
    page, data = _parse(tmp_path / "page.html")
    tr = model.trace(text)
    assert data["text"] == text
    assert_allclose(data["surprise"], tr.surprise, atol=1e-3)
    top = np.argsort(-tr.next_log_proba, axis=1, kind="stable")[:, :5]
    assert data["next"]["ids"] == top.tolist()
    assert_allclose(
        data["next"]["p"], np.exp(np.take_along_axis(tr.next_log_proba, top, 1)), atol=1e-4
    )
    assert len(data["layers"]) == 2
    for k, layer in enumerate(data["layers"]):
        kinds = [s["kind"] for s in layer["states"]]
        assert kinds == (["h", "c"] if model.cell == "lstm" else ["h"])
        for state in layer["states"]:
            acts = (tr.hidden if state["kind"] == "h" else tr.cell)[k]
            # int8 per unit: within half a step of 1/127 of the unit's largest magnitude
            step = np.abs(acts).max(axis=0) / 127
            assert np.all(np.abs(_unit_values(state, 200) - acts) <= step / 2 + 1e-6)
            assert sorted(state["order"]) == list(range(8))
    # the ranking lists units by |r| with a text property, from the same arrays
    quotes = data["ranking"][PROPERTIES.index("inside quotes")]
    assert quotes["present"] and len(quotes["units"]) == 8
    l, s, u, r = quotes["units"][0]
    kind = data["layers"][l]["states"][s]["kind"]
    acts = (tr.hidden if kind == "h" else tr.cell)[l][:, u]
    assert r == pytest.approx(np.corrcoef(acts, text_properties(text)[:, 0])[0, 1], abs=1e-3)
    assert [abs(e[3]) for e in quotes["units"]] == sorted(
        (abs(e[3]) for e in quotes["units"]), reverse=True
    )


def test_the_page_is_self_contained_and_survives_markup_in_the_text(model, tmp_path):
    write_activation_page(model, TEXT[:120], tmp_path / "page.html")
    page, data = _parse(tmp_path / "page.html")
    assert "</b>" in data["text"]  # the text's own tags stayed inside the JSON
    tags = [tag for tag, _ in page.tags]
    assert "b" not in tags and tags.count("script") == 2
    for tag, attrs in page.tags:
        assert "src" not in attrs and "href" not in attrs, (tag, attrs)
    assert not [t for t, _ in page.tags if t in ("link", "img", "iframe")]


def test_a_long_text_is_cut_with_a_message(model, tmp_path):
    summary = write_activation_page(model, TEXT, tmp_path / "page.html", max_chars=100)
    assert (summary.shown_chars, summary.total_chars) == (100, len(TEXT))
    _, data = _parse(tmp_path / "page.html")
    assert data["text"] == TEXT[:100] and len(data["surprise"]) == 100
    assert f"{len(TEXT):,} characters" in data["cut_message"] and "first 100" in data["cut_message"]
    assert summary.message == data["cut_message"]


def test_bad_input(model, tmp_path):
    with pytest.raises(ValueError, match="max_chars"):
        write_activation_page(model, TEXT, tmp_path / "p.html", max_chars=0)
    with pytest.raises(ValueError, match="text"):
        write_activation_page(model, "", tmp_path / "p.html")
    with pytest.raises(ValueError, match="text contains .*'Z'"):
        write_activation_page(model, "Zed", tmp_path / "p.html")
    with pytest.raises(ValueError, match="missing"):
        write_activation_page(model, TEXT, tmp_path / "missing" / "p.html")
