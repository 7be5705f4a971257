"""helpers.walk: counting stops at the cap, anchors free a walked graph safely, module rules, ref boxes."""
import gc

import pytest
import torch

from helpers import walk as W
from helpers.walk import GraphError, count_nodes, walk


def chain(n, keep=()):
    """x * c repeated n times; ``keep``: step numbers whose result is also returned."""
    x = torch.tensor(1.0, requires_grad=True)
    h, kept = x, []
    for i in range(n):
        h = h * 1.0001
        if i in keep:
            kept.append(h)
    return h, kept


@pytest.fixture
def small_span(monkeypatch):
    """Anchors every 10 sequence numbers, so a few hundred Nodes exercise them."""
    monkeypatch.setattr(W, "ANCHOR_SPAN", 10)
    W._reap()
    yield
    gc.collect()


def mine(before):
    """Sequence numbers of the anchors made since ``before`` (not the Nodes: holding
    them would keep the graph alive)."""
    return sorted(seq for k, (seq, _) in W._anchors.items() if k not in before)


def test_counting_stops_at_the_cap():
    h, _ = chain(5000)
    assert count_nodes([h], limit=100) == 101
    assert count_nodes([h]) == 5003
    with pytest.raises(GraphError, match="more than max_nodes=100 nodes"):
        walk(h, max_nodes=100)


def test_walked_chains_get_anchors_and_lose_them_when_freed(small_span):
    before = set(W._anchors)
    h, _ = chain(300)
    g = walk(h, max_nodes=None)
    anchors = mine(before)
    assert 25 <= len(anchors) <= 31  # one per block of 10 sequence numbers
    assert all(b - a <= 2 * W.ANCHOR_SPAN for a, b in zip(anchors, anchors[1:]))
    W._reap()
    assert len(mine(before)) == len(anchors)  # still used: nothing is released
    del g, h
    gc.collect()  # the collector's callback releases them, nearest the output first
    assert not mine(before)


def test_an_intermediate_the_learner_keeps_keeps_its_part_anchored(small_span):
    before = set(W._anchors)
    h, (middle,) = chain(300, keep=(150,))
    walk(h, max_nodes=None)
    total = len(mine(before))
    del h
    gc.collect()
    left = mine(before)
    assert 0 < len(left) < total  # the part below `middle` is still alive, so still anchored
    del middle
    gc.collect()
    assert not mine(before)


def test_a_refused_walk_anchors_what_it_touched(small_span):
    before = set(W._anchors)
    h, _ = chain(300)
    try:
        walk(h, max_nodes=100)
    except GraphError:
        pass  # (pytest.raises would keep the traceback, and the frames hold the graph)
    anchors = mine(before)
    assert 5 <= len(anchors) <= 12  # ~100 Nodes touched: about 10 blocks
    del h
    gc.collect()
    assert not mine(before)


def test_an_anchor_is_released_only_when_nothing_refers_to_it(small_span):
    before = set(W._anchors)
    h, _ = chain(50)
    walk(h, max_nodes=None)
    key = next(k for k in W._anchors if k not in before)
    held = W._anchors[key][1]  # the learner holds the Node itself
    del h
    gc.collect()
    assert key in W._anchors
    del held
    gc.collect()
    assert key not in W._anchors


def test_lca_of_module_paths():
    assert W._lca(None, "a.b") == "a.b"
    assert W._lca("a.b.c", "a.b.d") == "a.b"
    assert W._lca("a", "b") == ""
    assert W._lca("", "a.b") == ""
    assert W._lca("a.b", "a.b") == "a.b"


def test_module_rules_views_of_parameters_and_functional_use():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3, bias=False), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    x = torch.randn(2, 3, requires_grad=True)  # the input needs a gradient: its path is not a parameter's
    out = model(x)
    loss = (out * model[0].weight.sum()).mean()  # a functional use of layer 0's weight outside its forward
    g = walk(loss, modules=model)
    by_group = {}
    for n in g.nodes:
        if n.kind == "fn" and n.name != "AccumulateGrad":
            by_group.setdefault(n.group, []).append(n.name)
    assert sorted(by_group["0"]) == ["MmBackward0", "SumBackward0", "TBackward0"]  # no bias: Mm, not Addmm
    assert by_group[""] == ["TanhBackward0"]  # between layers 0 and 2
    assert sorted(by_group["2"]) == ["AddmmBackward0", "TBackward0"]
    assert "MulBackward0" in by_group[None] and "MeanBackward0" in by_group[None]
    assert g.modules == {"": "Sequential", "0": "Linear", "2": "Linear"}


def test_a_shared_parameter_belongs_to_the_common_parent():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(5, 4)
    head = torch.nn.Linear(4, 5, bias=False)
    head.weight = emb.weight  # weight tying
    model = torch.nn.ModuleDict({"emb": emb, "head": head})
    loss = head(emb(torch.tensor([1, 2]))).sum()
    g = walk(loss, modules=model)
    leaves = [n for n in g.nodes if n.kind == "leaf"]
    assert len(leaves) == 1 and leaves[0].group == "" and leaves[0].name == "emb.weight"


def test_ref_boxes_only_for_far_uses_of_a_shared_leaf():
    a = torch.tensor(2.0, requires_grad=True)
    near = (a * a) * a  # uses 1 and 2 ranks apart: drawn directly, as torchviz does
    g = walk(near, {"a": a})
    assert not [n for n in g.nodes if n.kind == "ref"]
    h = a
    for _ in range(20):
        h = h * a
    g = walk(h, {"a": a})
    refs = [n for n in g.nodes if n.kind == "ref"]
    direct = [e for e in g.edges if e.kind == "grad" and e.tail.kind == "fn" and e.tail.name == "AccumulateGrad"]
    # 21 uses: the first product is a * a. The 6 nearest the top get a direct edge, the first product both.
    assert len(refs) + len(direct) == 21 and len(direct) == W.CUT_SPAN + 1
    assert all(r.name == "AccumulateGrad(a)" and r.ref.name == "AccumulateGrad" for r in refs)
    # Ids: the refs are numbered after every other node, so the others keep theirs.
    ids = [int(n.id[len(g.prefix) + 1:]) for n in g.nodes]
    assert ids == sorted(ids) and all(n.kind == "ref" for n in g.nodes[-len(refs):])

