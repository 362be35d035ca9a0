"""`archspec graph`: the DOT text parsed back (nodes, edges, clusters, labels), escaping of
hostile strings, the error without graphviz's `dot`, and a real SVG render when `dot` exists."""
from __future__ import annotations

import html
import re
import shutil
from dataclasses import dataclass, field

import pytest

import archspec
from archspec.language.errors import ArchspecError, UsageError
from archspec.views.graph import output_format, to_dot
from conftest import EXAMPLES, REPO

LENET = EXAMPLES / "lenet.arch"
HAS_DOT = shutil.which("dot") is not None
NO_DOT = "graphviz's `dot` is not installed (apt-get install graphviz); .ci/run installs it"

NET = """\
input 3x16x16
conv 8 k3 p1 | relu
block basic(c, s=1) {
  residual project { conv c k3 s{s} p1 | bn } | relu
}
basic(8)
basic(16, s=2)
concat { conv 4 k1 } { conv 4 k3 p1 | relu } { }
add { conv 8 k1 } { conv 8 k3 p1 }
residual { conv 8 k1 } shortcut { conv 8 k1 }
gap | flatten | linear 10
"""


# --------------------------------------------------------------------------- a small DOT reader

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<arrow>->)|(?P<punct>[\[\]{}=;,])|(?P<id>[^\s\[\]{}=;,"]+))', re.S)


def unescape(quoted: str) -> str:
    """A DOT string as the text it shows: `\\"` a quote, `\\\\` a backslash, `\\n` a line break."""
    body, out, i = quoted[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append({'"': '"', "\\": "\\", "n": "\n", "l": "\n", "r": "\n"}.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip():
                raise AssertionError(f"DOT does not tokenize at {text[pos:pos + 40]!r}")
            break
        out.append(m.group(m.lastgroup))
        pos = m.end()
    return out


@dataclass
class Cluster:
    name: str
    attrs: dict[str, str] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)


@dataclass
class Dot:
    graph: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    edges: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    parent: dict[str, str] = field(default_factory=dict)  # node or cluster -> enclosing cluster

    def label(self, node: str) -> list[str]:
        return self.nodes[node]["label"].split("\n")

    def out(self, node: str) -> list[str]:
        return [h for t, h, _ in self.edges if t == node]

    def into(self, node: str) -> list[str]:
        return [t for t, h, _ in self.edges if h == node]


def _value(tok: str) -> str:
    return unescape(tok) if tok.startswith('"') else tok


def parse_dot(text: str) -> Dot:
    """Enough of the DOT grammar for what the graphviz package writes."""
    toks = tokens(text)
    dot, stack, i = Dot(), [], 0

    def attrs(j: int) -> tuple[dict[str, str], int]:
        found = {}
        assert toks[j] == "["
        j += 1
        while toks[j] != "]":
            key, eq, value = toks[j], toks[j + 1], toks[j + 2]
            assert eq == "=", toks[j:j + 3]
            found[key] = _value(value)
            j += 3
            if toks[j] in (",", ";"):
                j += 1
        return found, j + 1

    assert toks[0] == "digraph" and toks[2] == "{"
    i = 3
    while i < len(toks):
        tok = toks[i]
        if tok == "}":
            stack = stack[:-1]
            i += 1
        elif tok == "{":  # an anonymous subgraph: `rank=same` keeping branches in source order
            stack.append(None)
            i += 1
        elif tok == "subgraph":
            name = toks[i + 1]
            dot.clusters[name] = Cluster(name)
            if stack:
                dot.parent[name] = stack[-1]
            stack.append(name)
            assert toks[i + 2] == "{"
            i += 3
        elif tok in ("graph", "node", "edge") and toks[i + 1] == "[":
            found, i = attrs(i + 1)
            if tok == "graph":
                dot.graph.update(found)
        elif toks[i + 1] == "=":  # `key=value` inside a subgraph: the cluster's own attributes
            if stack[-1] is not None:
                dot.clusters[stack[-1]].attrs[tok] = _value(toks[i + 2])
            i += 3
        elif toks[i + 1] == "->":
            tail, head = tok, toks[i + 2]
            found, i = attrs(i + 3) if i + 3 < len(toks) and toks[i + 3] == "[" else ({}, i + 3)
            if found.get("style") != "invis":  # layout-only edges (branch order) are not part of the network
                dot.edges.append((tail, head, found))
        else:
            found, i = attrs(i + 1) if toks[i + 1] == "[" else ({}, i + 1)
            dot.nodes[tok] = found
            if stack:
                dot.clusters[stack[-1]].nodes.append(tok)
                dot.parent[tok] = stack[-1]
    return dot


def svg_texts(svg: str) -> list[str]:
    """The text elements of an SVG, unescaped (graphviz writes `-` as `&#45;`)."""
    return [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def by_first_line(dot: Dot, first: str) -> list[str]:
    return [n for n, a in dot.nodes.items() if a["label"].split("\n")[0] == first]


# --------------------------------------------------------------------------- structure

def test_lenet_is_a_chain_with_op_arguments_and_shapes():
    dot = parse_dot(to_dot(LENET))
    assert len(dot.nodes) == 13 and len(dot.edges) == 12 and not dot.clusters
    order = list(dot.nodes)
    assert [(t, h) for t, h, _ in dot.edges] == list(zip(order, order[1:]))
    assert dot.label(order[1]) == ["conv1: conv 6 k5", "[B, 6, 28, 28]", "456 params"]
    assert dot.label(order[7]) == ["flatten1: flatten", "[B, 400]"]
    assert dot.graph["label"] == f"{LENET}: [B, 3, 32, 32] -> [B, 10], 62,006 params"


def test_residuals_branches_and_blocks():
    dot = parse_dot(to_dot(NET))
    labels = {c.attrs["label"]: c for c in dot.clusters.values()}
    assert set(labels) == {"basic1: basic(c=8, s=1)", "basic1.res1: residual project", "basic2: basic(c=16, s=2)",
                           "basic2.res1: residual project", "concat1: concat", "add1: add", "res1: residual"}
    assert all(name.startswith("cluster_") for name in dot.clusters)
    # Blocks hold their residual cluster.
    assert dot.parent[labels["basic1.res1: residual project"].name] == labels["basic1: basic(c=8, s=1)"].name

    # basic1: identity skip. The add node gets the body's end and, dashed, the residual's input.
    res1 = labels["basic1.res1: residual project"]
    add = next(n for n in res1.nodes if dot.label(n)[0] == "add")
    relu_before = by_first_line(dot, "relu1: relu")[0]  # the stem's relu feeds the residual
    sources = dot.into(add)
    assert len(sources) == 2 and relu_before in sources
    skip = next(a for t, h, a in dot.edges if t == relu_before and h == add)
    assert skip["style"] == "dashed" and skip["label"] == "identity"
    assert len(dot.out(relu_before)) == 2  # into the body, and the skip

    # basic2: projected skip: a dashed 1x1 conv + bn path into the add.
    res2 = labels["basic2.res1: residual project"]
    proj = [n for n in res2.nodes if "dashed" in dot.nodes[n].get("style", "")]
    # named as the shortcut's, not the body's conv1/bn1
    assert [dot.label(n)[0] for n in proj] == ["shortcut.conv1: conv 16 k1 s2 nobias", "shortcut.bn1: bn"]
    add2 = next(n for n in res2.nodes if dot.label(n)[0] == "add")
    assert proj[1] in dot.into(add2) and dot.label(add2)[1] == "[B, 16, 8, 8]"

    # concat: fan-out from one node into 3 branches (one empty: straight to the join).
    concat = labels["concat1: concat"]
    join = next(n for n in concat.nodes if dot.label(n)[0] == "concat")
    assert dot.label(join)[1] == "[B, 24, 8, 8]"  # 4 + 4 + 16 channels
    fan = [t for t, h, _ in dot.edges if h in concat.nodes and t not in concat.nodes]
    assert len(set(fan)) == 1 and len(fan) == 3
    assert len(dot.into(join)) == 3 and fan[0] in dot.into(join)

    # add branches: two paths into one add node.
    add_join = next(n for n in labels["add1: add"].nodes if dot.label(n)[0] == "add")
    assert len(dot.into(add_join)) == 2
    # explicit shortcut: drawn dashed.
    res = labels["res1: residual"]
    assert any("dashed" in dot.nodes[n].get("style", "") for n in res.nodes)
    # Every layer of the report is one node; every node but the input has an edge in.
    report = archspec.check(NET)
    layer_nodes = [n for n, a in dot.nodes.items() if a.get("shape") != "ellipse"]
    assert len(layer_nodes) == len(report.rows)
    assert all(dot.into(n) for n in dot.nodes if n != next(iter(dot.nodes)))


def test_nested_clusters_are_named_by_module_path():
    text = "input 3x8x8\nresidual { concat { relu } { add { bn } { relu } } | conv 3 k1 }\nflatten | linear 10\n"
    dot = parse_dot(to_dot(text))
    labels = {c.attrs["label"]: name for name, c in dot.clusters.items()}
    assert set(labels) == {"res1: residual", "res1.body.concat1: concat", "res1.body.concat1.branch2.add1: add"}
    assert dot.parent[labels["res1.body.concat1.branch2.add1: add"]] == labels["res1.body.concat1: concat"]
    assert dot.parent[labels["res1.body.concat1: concat"]] == labels["res1: residual"]


HOSTILE = ['quote " and \\" escaped', "back\\slash \\N \\l \\G \\", "{braces} [brackets] ;", "<b>html</b>",
           "<looks like html>", "tab\tand\nnewline", "-> edge -- ops", "ünïcödé 🙂", 'a\\"b']


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_survive_the_dot(text):
    import graphviz

    from archspec.views.graph import _label

    g = graphviz.Digraph("t")
    g.node("n0", _label(text, "second line"))
    g.edge("n0", "n0")
    dot = parse_dot(g.source)
    assert dot.label("n0") == [text.replace("\n", " "), "second line"]
    assert len(dot.nodes) == 1 and len(dot.edges) == 1


def test_hostile_file_name_in_the_title(tmp_path):
    name = 'we"ird {x} <i>y<i> back\\slash \\l.arch'  # no / in a file name
    path = tmp_path / name
    path.write_text(LENET.read_text())
    dot = parse_dot(to_dot(path))
    assert dot.graph["label"].startswith(str(path) + ": ")
    assert len(dot.nodes) == 13
    if HAS_DOT:
        svg = archspec.graph(path, format="svg").decode()
        assert any(t.startswith(str(path) + ": [B, 3, 32, 32]") for t in svg_texts(svg))


# --------------------------------------------------------------------------- output and rendering

def test_output_formats():
    assert [output_format(p) for p in ("a.dot", "a.gv", "a.svg", "a.PNG", "a.pdf")] == ["dot", "dot", "svg", "png", "pdf"]
    with pytest.raises(UsageError) as err:
        output_format("a.jpg")
    assert ".svg" in err.value.help


def test_dot_output_needs_no_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere
    text = archspec.graph(LENET, output=tmp_path / "lenet.dot")
    assert (tmp_path / "lenet.dot").read_text() == text and text.startswith("digraph")
    with pytest.raises(ArchspecError) as err:
        archspec.graph(LENET, output=tmp_path / "lenet.svg")
    assert "not installed" in err.value.message
    assert "apt-get install graphviz" in err.value.help and "brew install graphviz" in err.value.help
    assert not (tmp_path / "lenet.svg").exists()




def test_format_that_contradicts_the_file_name_is_refused(tmp_path, cli, monkeypatch):
    """`-o out.png --format dot` wrote DOT text into a .png; now refused, nothing written. The format
    still follows the name when --format is left out, and --format names the format of a name without one."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot`: every case here is decided before rendering
    monkeypatch.chdir(tmp_path)
    r = cli("graph", str(LENET), "-o", "out.png", "--format", "dot")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == ("error: out.png is named as a PNG file, but the format asked for is DOT\n"
                        "help: leave the format out (it follows the file name), or name the file out.dot\n")
    with pytest.raises(UsageError, match="out.gv is named as a DOT file, but the format asked for is SVG"):
        archspec.graph(LENET, output=tmp_path / "out.gv", format="svg")
    assert list(tmp_path.iterdir()) == []
    assert cli("graph", str(LENET), "-o", "out.txt", "--format", "dot").returncode == 0
    assert cli("graph", str(LENET), "-o", "out.gv", "--format", "dot").returncode == 0
    assert (tmp_path / "out.txt").read_text() == (tmp_path / "out.gv").read_text() == archspec.graph(LENET)

def test_cli_without_dot_says_how_to_install(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere
    monkeypatch.chdir(tmp_path)
    run = lambda *a: cli("graph", str(LENET), *a)
    ok = run("-o", "x.dot")
    assert ok.returncode == 0 and (tmp_path / "x.dot").read_text().startswith("digraph")
    assert run().stdout.startswith("digraph")  # DOT to standard output
    bad = run("-o", "x.png")
    assert bad.returncode == 1 and "apt-get install graphviz" in bad.stderr and "Traceback" not in bad.stderr
    wrong = run("-o", "x.jpg")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr


@pytest.mark.skipif(not HAS_DOT, reason=NO_DOT)
def test_real_svg_render(tmp_path):
    out = tmp_path / "net.svg"
    archspec.graph(NET, output=out)
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    texts = svg_texts(svg)
    for text in ("conv1: conv 8 k3 p1", "basic2.res1: residual project", "concat1: concat", "[B, 24, 8, 8]", "identity"):
        assert text in texts, text
    assert svg.count('class="cluster"') == 7


BRANCHES = """\
input 3x16x16
block cbr(c, k=3) { conv c k{k} p{k//2} nobias | bn | relu }
concat { conv 1 k1 } { conv 2 k1 | relu } { conv 3 k1 | relu | bn } { maxpool 3 s1 p1 | conv 4 k1 }
concat { cbr(5, k=1) } { cbr(6, k=3) } { cbr(7, k=5) } { avgpool 3 s1 p1 | cbr(8, k=1) }
flatten | linear 10
"""


def _node_x(svg_text: str) -> dict[str, float]:
    """Each node's first label line -> its x in dot's own layout (the SVG's coordinates)."""
    import xml.etree.ElementTree as ET

    svg, ns = ET.fromstring(svg_text), {"s": "http://www.w3.org/2000/svg"}
    out = {}
    for g in svg.iter("{http://www.w3.org/2000/svg}g"):
        if g.get("class") == "node":
            first = g.find("s:text", ns)
            out[first.text] = float(first.get("x"))
    return out


@pytest.mark.skipif(not HAS_DOT, reason=NO_DOT)
def test_branches_are_drawn_in_source_order():
    """Inception-style branches left to right as written (they were drawn 3, 2, 4, 1)."""
    x = _node_x(archspec.graph(BRANCHES, format="svg").decode())
    for firsts in (["conv1: conv 1 k1", "conv1: conv 2 k1", "conv1: conv 3 k1", "pool1: maxpool 3 s1 p1"],
                   ["conv1: conv 5 k1 nobias", "conv1: conv 6 k3 p1 nobias", "conv1: conv 7 k5 p2 nobias", "pool1: avgpool 3 s1 p1"]):
        xs = [x[f] for f in firsts if f in x]
        assert len(xs) == 4 and xs == sorted(xs), dict(zip(firsts, xs))


def test_committed_lenet_svg_shows_every_layer():
    texts = svg_texts((REPO / "docs" / "lenet.svg").read_text())
    dot = parse_dot(to_dot(archspec.check(archspec.parse(LENET.read_text(), "examples/lenet.arch"))))
    assert [line for node in dot.nodes for line in dot.label(node)] == texts[1:]
    assert texts[0] == "examples/lenet.arch: [B, 3, 32, 32] -> [B, 10], 62,006 params"
