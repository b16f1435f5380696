"""The static leaderboard: content, escaping of hostile text, ties, downloads, footer."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from _synthetic import GC, HOSTILE, build_synthetic_store
from click.testing import CliRunner

from bench.cli import cli
from bench.site import build_site
from bench.site.data import Cell, Row, rank, safe_json


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    store = build_synthetic_store(root / "bench.duckdb", hostile=True)
    result = build_site(store, root / "site")
    return store, result


def _read(result, name):
    return (result.out / name).read_text(encoding="utf-8")


class _Scripts(HTMLParser):
    """Collects every <script> element and every on* attribute, as a browser would parse them."""

    def __init__(self):
        super().__init__()
        self.scripts, self.handlers, self._in = [], [], None

    def handle_starttag(self, tag, attrs):
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        if tag == "script":
            self._in = dict(attrs)
            self.scripts.append([dict(attrs), ""])

    def handle_data(self, data):
        if self._in is not None:
            self.scripts[-1][1] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self._in = None


def test_hostile_registry_text_is_escaped_everywhere(site):
    _, result = site
    pages = [result.out / "index.html"] + sorted((result.out / "models").glob("*.html"))
    for page in pages:
        html = page.read_text()
        assert HOSTILE not in html and "<b>bold</b>" not in html
        parser = _Scripts()
        parser.feed(html)
        assert parser.handlers == [], page
        # only our own scripts: the JSON data island and the vendored site.js
        kinds = [(attrs.get("type"), attrs.get("src")) for attrs, _ in parser.scripts]
        assert set(kinds) <= {("application/json", None), (None, "assets/site.js")}, kinds
    index = _read(result, "index.html")
    assert "&lt;/script&gt;&lt;script&gt;window.__pwned=1" in index  # shown, as text
    data = re.search(r'<script type="application/json" id="lb-data">(.*?)</script>', index, re.S).group(1)
    assert "<" not in data and ">" not in data
    assert HOSTILE in [row["family"] for row in json.loads(data)]  # the JSON still carries the exact text


def test_safe_json_cannot_close_the_script():
    text = safe_json({"x": "</script><script>alert(1)</script>", "y": "a & b \u2028"})
    assert "</" not in text and "<" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"x": "</script><script>alert(1)</script>", "y": "a & b \u2028"}


def test_main_table_has_one_row_per_checkpoint_and_a_column_per_measure(site):
    _, result = site
    index = _read(result, "index.html")
    body = index.split('<table id="leaderboard"')[1].split("</table>")[0]
    rows = re.findall(r"<tr data-i=", body)
    assert len(rows) == 5  # four pretrained checkpoints and one random-weights control
    assert len(re.findall(r"<tr data-i=\"\d+\" hidden>", body)) == 1  # the control, hidden by default
    for measure in ("gc", "rf", "volume"):
        assert f'data-sort="m:{measure}"' in body
    assert 'data-sort="m:ag"' not in body and 'data-sort="m:plane"' not in body  # architecture-level
    assert "1580</span><span class=\"pm\"> ± 88</span>" in body  # value ± 1.96 stderr


def test_architecture_results_appear_once_per_architecture(site):
    _, result = site
    arch = _read(result, "index.html").split('id="architectures-table"')[1].split("</table>")[0]
    assert arch.count("<tr>") == 1 + 2  # header + resnet18 + vit_tiny
    page = _read(result, "models/resnet18.a1_in1k.html")
    assert "Architecture-level: shared by all checkpoints of resnet18." in page
    assert "AG rank" in page and "Plane invariance" in page


def test_rank_ties_are_marked_where_intervals_overlap(site):
    _, result = site
    body = _read(result, "index.html").split('<table id="leaderboard"')[1]
    shown = body.split("<tbody>")[1].split('hidden>\n')[0]  # rows before the hidden control
    ties = dict(re.findall(r'<span class="rank-n">(\d*)</span><span class="tie"[^>]*?( hidden)?>', shown))
    # gc, descending: resnet50 (1580 ± 88) and resnet18 (1520 ± 78) overlap; the rest are apart
    assert ties == {"1": "", "2": "", "3": " hidden", "4": " hidden"}


def _row(i, value, se):
    return Row(i, {"model_id": str(i)}, "pretrained", None,
               {"m": None if value is None else Cell(value, se, value - 1.96 * se, value + 1.96 * se, 10)})


def test_rank_definition():
    rows = rank([_row(0, 10.0, 0.5), _row(1, 13.0, 0.5), _row(2, 30.0, 1.0), _row(3, None, 0),
                 _row(4, 32.0, 0.5)], "m")
    assert [r.index for r in rows] == [4, 2, 1, 0, 3]
    assert [r.rank for r in rows] == [1, 2, 3, 4, None]
    assert [r.tied for r in rows] == [True, True, False, False, False]  # 32 vs 30 overlap; 13 vs 10 do not
    ascending = rank(rows, "m", descending=False)
    assert [r.index for r in ascending] == [0, 1, 2, 4, 3]


def test_model_page_has_profiles_maps_diffeo_and_every_stored_value(site):
    store, result = site
    page = _read(result, "models/resnet18.a1_in1k.html")
    for heading in ("Layer profiles", "Volume element", "Diffeomorphism examples", "Every stored value"):
        assert heading in page
    for title in ("Capacity by layer", "radius by layer", "dimension by layer", "center_corr by layer",
                  "R_f by layer", "R_f over the deformation size"):
        assert title in page
    stored = page.split("Every stored value")[1]
    n_rows = store.query("SELECT count(*) n FROM measurements WHERE model_id = 'resnet18.a1_in1k' OR "
                         "(scope = 'architecture' AND timm_name = 'resnet18')")["n"][0].as_py()
    assert stored.count("<tr><td>") == n_rows
    assert "&#34;cutoff&#34;:3" in stored  # protocol parameters shown, escaped
    for img in re.findall(r'<img src="([^"]+)"', page):
        assert (result.out / "models" / img).resolve().is_file(), img
    undefined = _read(result, "models/convnext_atto.d2_in1k.html")
    assert "undefined: penultimate features are constant on the plane" in undefined
    assert "Volume element" not in undefined


def test_scatter_plots_and_downloads(site):
    store, result = site
    index = _read(result, "index.html")
    assert "GC against ImageNet top-1" in index and "R_f against GC" in index
    for name in ("runs", "models", "measurements", "leaderboard", "architecture_leaderboard"):
        assert f'href="data/{name}.csv"' in index and f'href="data/{name}.parquet"' in index
        n = store.query(f"SELECT count(*) n FROM {name}")["n"][0].as_py()
        assert pq.read_table(result.out / "data" / f"{name}.parquet").num_rows == n
        assert pacsv.read_csv(result.out / "data" / f"{name}.csv").num_rows == n
    arrays = pacsv.read_csv(result.out / "data" / "measurements.csv").column("arrays").to_pylist()
    assert any(a and "plane0_logvol" in [x["name"] for x in json.loads(a)] for a in arrays)


def test_footer_names_data_revision_and_protocol_version(site):
    _, result = site
    for page in ("index.html", "models/resnet18.a1_in1k.html"):
        footer = _read(result, page).split("<footer>")[1]
        assert f'<code id="data-revision">{result.revision}</code>' in footer
        assert "Measurement protocol version 1" in footer


def test_no_network_references(site):
    _, result = site
    for page in [result.out / "index.html", *(result.out / "models").glob("*.html")]:
        html = page.read_text()
        assert not re.search(r'(src|href)="(https?:)?//', html.replace('href="https://arxiv.org', "")), page


def test_cli_build_on_an_empty_database(tmp_path):
    from bench.store.db import Store

    store = Store(tmp_path / "empty.duckdb")
    store.start_run("bench score", "0.1.0")
    res = CliRunner().invoke(cli, ["leaderboard", "build", "--db", str(store.path), "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert "No checkpoint results yet." in (tmp_path / "s" / "index.html").read_text()


def test_gc_fixture_matches_what_the_test_expects():
    # guards the tie test above against a change of the synthetic data
    (a, sa), (b, sb) = GC["resnet50.a1_in1k"], GC["resnet18.a1_in1k"]
    assert a - 1.96 * sa <= b + 1.96 * sb
