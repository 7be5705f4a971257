"""helpers.walk: counting stops at the cap, anchors free a walked graph safely, module rules, ref boxes,
record_modules."""
import gc
import operator
import weakref

import pytest
import torch
from torch import nn

from helpers import walk as W
from helpers.walk import GraphError, count_nodes, record_modules, walk


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


# --- record_modules: the forward says which module made each Node ----------------------------

def fn_groups(g):
    """{Node name: [group, ...]} for the backward Nodes (AccumulateGrad and leaves left out)."""
    out = {}
    for n in g.nodes:
        if n.kind == "fn" and n.name != "AccumulateGrad":
            out.setdefault(n.name, []).append(n.group)
    return out


class Doubler(nn.Module):
    """A block without parameters: two ops, nothing in the graph to recognise it by."""

    def forward(self, x):
        return x.tanh() * 2


def test_the_sequence_number_is_the_next_nodes():
    # record_modules relies on it: _get_sequence_nr() is the number the next Node gets.
    x = torch.ones(2, requires_grad=True)
    before = torch.autograd._get_sequence_nr()
    y = x * 2
    assert y.grad_fn._sequence_nr() == before and torch.autograd._get_sequence_nr() == before + 1
    torch.ones(2) * 2  # records no Node: no number used
    assert torch.autograd._get_sequence_nr() == before + 1


def test_recorded_modules_without_parameters_get_their_own_group():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.5), Doubler(), nn.Dropout(0.5),
                          nn.Linear(4, 1))
    model[4].eval()  # in eval mode Dropout returns its input: it makes no Node at all
    x = torch.randn(2, 3)
    with record_modules(model):
        out = model(x)
    loss = (out * model[0].weight.sum()).mean()  # after the forward: outside every recorded call
    g = walk(loss, modules=model)
    groups = fn_groups(g)
    assert groups["ReluBackward0"] == ["1"]
    assert groups["TanhBackward0"] == ["3"]
    assert sorted(groups["MulBackward0"], key=str) == ["2", "3", None]  # Dropout's (train), Doubler's, the loss's
    assert sorted(groups["AddmmBackward0"]) == ["0", "5"] and sorted(groups["TBackward0"]) == ["0", "5"]
    assert groups["MeanBackward0"] == [None]
    assert groups["SumBackward0"] == ["0"]  # the functional use of layer 0's weight: rule 2, as before
    assert {n.name: n.group for n in g.nodes if n.kind == "leaf"}["0.weight"] == "0"  # rule 1
    assert g.modules == {"": "Sequential", "0": "Linear", "1": "ReLU", "2": "Dropout", "3": "Doubler",
                         "5": "Linear"}  # "4" made no Node: no box
    unrecorded = fn_groups(walk((model(x) * model[0].weight.sum()).mean(), modules=model))
    assert unrecorded["ReluBackward0"] == [""] and unrecorded["TanhBackward0"] == [""]  # rule 3


def test_nested_modules_the_innermost_recorded_call_wins():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), Doubler())), nn.Linear(2, 1))
    with record_modules(model):
        loss = model(torch.randn(1, 2)).sum()
    g = walk(loss, modules=model)
    groups = fn_groups(g)
    assert groups["ReluBackward0"] == ["0.1.0"] and groups["TanhBackward0"] == ["0.1.1"]
    assert groups["MulBackward0"] == ["0.1.1"] and sorted(groups["AddmmBackward0"]) == ["0.0", "1"]
    assert groups["SumBackward0"] == [None]
    assert {"0", "0.1", "0.1.0", "0.1.1"} <= set(g.modules) and g.modules["0.1.0"] == "ReLU"


def hook_dicts(model):
    names = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_always_called",
             "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs")
    return {(p, a): list(getattr(m, a).items()) for p, m in model.named_modules() for a in names}


class Fails(nn.Module):
    def forward(self, x):
        x = x.relu()
        raise ValueError("broken forward")


def test_hooks_are_removed_on_exit_and_after_an_error_in_the_forward():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), Fails()))
    mine = lambda module, args, output: None  # a learner's own hooks stay, in their order
    model[0].register_forward_hook(mine)
    model[1][0].register_forward_pre_hook(lambda module, args: None)
    model[1][0].register_forward_hook(mine, always_call=True, with_kwargs=False)
    before = hook_dicts(model)
    with pytest.warns(UserWarning, match="recorded nothing"), record_modules(model):
        assert hook_dicts(model) != before  # the recording hooks are in
        with record_modules(model):  # nested: the same hooks, no second set
            inside = hook_dicts(model)
        assert hook_dicts(model) == inside
    assert hook_dicts(model) == before
    with pytest.raises(ValueError, match="broken forward"):
        with record_modules(model):
            model(torch.randn(1, 2))
    assert hook_dicts(model) == before
    rec = W._recordings[model]
    assert rec.depth == 0 and not rec.calls and not rec.handles
    # always_call closed every call the error went through, the failing one's included.
    assert sorted(path for _, _, path, _ in rec.intervals) == ["", "0", "1", "1.0", "1.1"]
    assert all(start <= end for start, end, _, _ in rec.intervals)
    with pytest.raises(GraphError, match="record_modules needs the model"):
        with record_modules({"not": "a model"}):
            pass


class TwiceActivated(nn.Module):
    def __init__(self, act=None):
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(2, 2), nn.Linear(2, 2), act or nn.ReLU()

    def forward(self, x):
        return self.act(self.fc2(self.act(self.fc1(x))))  # one ReLU module, called twice


def test_a_shared_submodule_called_twice():
    torch.manual_seed(0)
    block = TwiceActivated()
    with record_modules(block):
        loss = block(torch.randn(1, 2)).sum()
    assert fn_groups(walk(loss, modules=block))["ReluBackward0"] == ["act", "act"]
    # One instance at two paths: the caller's child decides; in one Sequential twice, their parent.
    act = nn.ReLU()
    model = nn.Sequential(TwiceActivated(act), TwiceActivated(act))
    with record_modules(model):
        loss = model(torch.randn(1, 2)).sum()
    assert fn_groups(walk(loss, modules=model))["ReluBackward0"] == ["1.act"] * 2 + ["0.act"] * 2
    model = nn.Sequential(nn.Linear(2, 2), act, nn.Linear(2, 2), act)
    with record_modules(model):
        loss = model(torch.randn(1, 2)).sum()
    assert fn_groups(walk(loss, modules=model))["ReluBackward0"] == ["", ""]


def test_forwards_in_one_block_add_up_and_a_new_block_starts_afresh():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with record_modules(model):
        first = model(torch.randn(1, 2)).sum()
        second = model(torch.randn(1, 2)).sum()
    assert fn_groups(walk(first, modules=model))["ReluBackward0"] == ["1"]
    assert fn_groups(walk(second, modules=model))["ReluBackward0"] == ["1"]
    with record_modules(model):
        third = model(torch.randn(1, 2)).sum()
    assert fn_groups(walk(first, modules=model))["ReluBackward0"] == [""]  # that recording is gone
    assert fn_groups(walk(third, modules=model))["ReluBackward0"] == ["1"]
    assert fn_groups(walk(model(torch.randn(1, 2)).sum(), modules=model))["ReluBackward0"] == [""]


def test_collapse_folds_a_recorded_module_without_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with record_modules(model):
        loss = model(torch.randn(1, 2)).sum()
    full = walk(loss, modules=model)
    relu = next(n.obj for n in full.nodes if n.name == "ReluBackward0")
    g = walk(loss, modules=model, collapse=["1"])
    box = g.node_of(relu)
    assert box.kind == "module" and box.name == "1" and box.group == "" and g.modules["1"] == "ReLU"
    assert [m.name for m in box.members] == ["ReluBackward0"]
    assert len(g.nodes) == len(full.nodes)  # one Node folded, one box added
    assert {e.head.name for e in g.edges if e.tail is box} == {"AddmmBackward0"}


def test_the_recording_dies_with_the_model_and_keeps_no_graph_alive():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    with record_modules(model):
        out = model(torch.randn(1, 2))
    walk(out, modules=model)
    gc.collect()
    count = len(W._recordings)
    assert model in W._recordings
    model_ref, out_ref = weakref.ref(model), weakref.ref(out)
    del out
    gc.collect()
    assert out_ref() is None  # the recording holds no tensor (nor Node)
    del model
    gc.collect()
    assert model_ref() is None and len(W._recordings) == count - 1


def test_without_a_recording_the_groups_are_the_rules_ones():
    # Every Node's group as the rules gave it before record_modules existed (same model as test_draw's).
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x)))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), Block(), nn.Linear(4, 1))
    loss = model(torch.randn(2, 3)).pow(2).mean()
    with pytest.warns(UserWarning), record_modules(nn.Sequential(nn.ReLU())):
        pass  # another model's recording changes nothing
    with record_modules(model):  # nor one of this model that did not make this graph
        model(torch.randn(2, 3))
    g = walk(loss, modules=model)
    assert [(n.name, n.group) for n in g.nodes if n.kind != "output"] == [
        ("MeanBackward0", None), ("PowBackward0", None), ("AddmmBackward0", "3"), ("AccumulateGrad", "3"),
        ("3.bias", "3"), ("AddmmBackward0", "2.fc2"), ("TBackward0", "3"), ("AccumulateGrad", "2.fc2"),
        ("2.fc2.bias", "2.fc2"), ("ReluBackward0", "2"), ("TBackward0", "2.fc2"), ("AccumulateGrad", "3"),
        ("3.weight", "3"), ("AddmmBackward0", "2.fc1"), ("AccumulateGrad", "2.fc2"),
        ("2.fc2.weight", "2.fc2"), ("AccumulateGrad", "2.fc1"), ("2.fc1.bias", "2.fc1"),
        ("ReluBackward0", ""), ("TBackward0", "2.fc1"), ("AddmmBackward0", "0"), ("AccumulateGrad", "2.fc1"),
        ("2.fc1.weight", "2.fc1"), ("AccumulateGrad", "0"), ("0.bias", "0"), ("TBackward0", "0"),
        ("AccumulateGrad", "0"), ("0.weight", "0")]
    assert g.modules == {"": "Sequential", "3": "Linear", "2": "Block", "2.fc2": "Linear",
                         "2.fc1": "Linear", "0": "Linear"}


class Counted(int):
    """An int that counts the comparisons made with it (the sweep's and the sorts')."""
    calls = 0

    def _count(op):
        def compare(self, other):
            Counted.calls += 1
            return op(int(self), int(other))
        return compare

    __lt__, __le__, __gt__, __ge__ = map(_count, (operator.lt, operator.le, operator.gt, operator.ge))


def test_twenty_thousand_recorded_nodes_group_without_comparing_every_node_with_every_call(monkeypatch):
    torch.manual_seed(0)
    layers = []
    for _ in range(2860):  # Addmm, T, 2 AccumulateGrad, 2 leaves and a Relu each: 7 nodes
        layers += [nn.Linear(2, 2), nn.ReLU()]
    model = nn.Sequential(*layers)
    with record_modules(model):
        loss = model(torch.ones(1, 2)).sum()
    calls = len(W._recordings[model].intervals)
    assert calls == 5721
    seq = W._seq
    monkeypatch.setattr(W, "_seq", lambda fn: Counted(seq(fn)))
    Counted.calls = 0
    g = walk(loss, modules=model, max_nodes=None)
    assert len(g.nodes) > 20_000
    relus = [n.group for n in g.nodes if n.name == "ReluBackward0"]
    assert relus[0] == "5719" and relus[-1] == "1" and len(set(relus)) == 2860
    # Sorting the Nodes plus one sweep: about 20 comparisons per Node. Comparing each Node with
    # each recorded call would take 20,000 x 5,721, about 10^8.
    assert Counted.calls < 40 * len(g.nodes)


def test_record_modules_warns_when_no_forward_ran_inside_it():
    import warnings
    from helpers.walk import record_modules
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    out = model(torch.ones(1, 2)).sum()
    with pytest.warns(UserWarning, match="no forward of the model ran inside the with block"):
        with record_modules(model):
            walk(out, modules=model)          # the forward ran before the block
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with record_modules(model):
            model(torch.ones(1, 2))           # a forward inside: no warning


def test_a_recording_keeps_a_submodule_whose_parameters_are_used_without_calling_it():
    # MultiheadAttention uses out_proj's weight and bias itself; out_proj's forward never runs.
    torch.manual_seed(0)
    model = nn.Sequential(nn.MultiheadAttention(4, 1, batch_first=True))
    x = torch.randn(1, 3, 4)
    with record_modules(model):
        out = model[0](x, x, x)[0].sum()
    groups = {n.group for n in walk(out, modules=model).nodes if n.kind == "fn"}
    assert "0.out_proj" in groups and "0" in groups, groups


def test_a_torchscript_submodule_is_recorded_under_its_caller():
    model = nn.Sequential(nn.Linear(2, 2), torch.jit.script(nn.Sequential(nn.ReLU())))
    with record_modules(model):
        out = model(torch.ones(1, 2)).sum()
    names = {n.name: n.group for n in walk(out, modules=model).nodes if n.kind == "fn"}
    assert names["ReluBackward0"] == "", names
