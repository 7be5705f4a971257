"""Chapter 03's claims about saved tensors, checked against the installed PyTorch.

The chapter's prose says which operations save what, that a pack hook sees a
tensor saved twice twice, that no_grad saves nothing, that summing two losses
gives the gradients of two backward passes, and that retain_graph in a chunked
RNN loop changes the gradients. If a PyTorch release changes one of these, the
chapter text must change with it. The tests at the end read the executed
notebook: what its cells print is what the prose says (activation checkpointing
included), and the chapter keeps its noise down (no stray outputs, short cells,
one layout for the before/after pictures of one graph).
"""
import json
import re
import warnings

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import nbexec
from nbexec import SOLUTIONS

PATH = SOLUTIONS / "03_retain_graph_saved_tensors.ipynb"


def _saved_kinds(op):
    a = torch.tensor([0.3, 1.7], requires_grad=True)
    out = op(a)
    kinds = []
    for name in sorted(dir(out.grad_fn)):
        value = getattr(out.grad_fn, name) if name.startswith("_saved_") else None
        if isinstance(value, torch.Tensor):
            kinds.append("input" if value is a else
                         "output" if value.data_ptr() == out.data_ptr() else "other")
    return kinds


@pytest.mark.parametrize("op, kinds", [
    (lambda a: a + 1, []),
    (lambda a: a * a, ["input", "input"]),
    (torch.exp, ["output"]),
    (torch.relu, ["output"]),
    (torch.sin, ["input"]),
    (lambda a: a * torch.ones(2), ["other"]),  # only the factor the gradient needs
], ids=["add", "mul", "exp", "relu", "sin", "mul_by_constant"])
def test_what_each_op_saves(op, kinds):
    assert _saved_kinds(op) == kinds


def _packs(fn, *args, grad=True):
    seen = []
    with torch.set_grad_enabled(grad):
        with torch.autograd.graph.saved_tensors_hooks(lambda t: (seen.append(t), t)[1], lambda t: t):
            fn(*args)
    return seen


def test_a_tensor_saved_twice_is_packed_twice_in_one_storage():
    q = torch.ones(1000, requires_grad=True)
    seen = _packs(lambda q: q * q, q)
    assert len(seen) == 2
    assert len({t.untyped_storage().data_ptr() for t in seen}) == 1


def test_no_grad_saves_nothing_and_grad_mode_saves_activations():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    data = torch.randn(32, 64)
    assert _packs(model, data, grad=False) == []
    seen = _packs(model, data)
    anyway = {t.untyped_storage().data_ptr() for t in [*model.parameters(), data]}
    activations = {t.untyped_storage().data_ptr() for t in seen} - anyway
    assert len(activations) == 2  # the two ReLU outputs, each saved twice
    assert sum(t.nbytes for t in seen) > sum(
        {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in seen}.values())


def test_second_backward_fails_and_retain_graph_doubles_the_gradient():
    x = torch.tensor([0.5, 1.0], requires_grad=True)
    loss = torch.exp(x * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()
    x.grad = None
    loss = torch.exp(x * x).sum()
    loss.backward(retain_graph=True)
    once = x.grad.clone()
    loss.backward()
    assert torch.equal(x.grad, 2 * once)


def test_sum_of_losses_equals_two_backward_passes():
    torch.manual_seed(0)
    trunk, head_a, head_b = nn.Linear(4, 8), nn.Linear(8, 1), nn.Linear(8, 1)
    data = torch.randn(16, 4)
    feat = torch.tanh(trunk(data))
    loss_a, loss_b = head_a(feat).pow(2).mean(), head_b(feat).abs().mean()
    loss_a.backward(retain_graph=True)
    loss_b.backward()
    two = trunk.weight.grad.clone()
    trunk.zero_grad()
    feat = torch.tanh(trunk(data))
    (head_a(feat).pow(2).mean() + head_b(feat).abs().mean()).backward()
    assert torch.allclose(two, trunk.weight.grad, atol=1e-6)


def test_retain_graph_in_a_chunked_rnn_changes_the_gradients():
    torch.manual_seed(0)
    W_h = (0.5 * torch.randn(4, 4)).requires_grad_()
    W_x = torch.randn(4, 3)
    seq = torch.randn(8, 3)

    def grads(detach):
        h, out = torch.zeros(4), []
        for start in (0, 4):
            if detach:
                h = h.detach()
            loss = 0
            for x_t in seq[start:start + 4]:
                h = torch.tanh(W_h @ h + W_x @ x_t)
                loss = loss + (h ** 2).sum()
            out.append(torch.autograd.grad(loss, W_h, retain_graph=not detach)[0])
        return out

    detached, retained = grads(True), grads(False)
    assert torch.allclose(detached[0], retained[0])
    assert not torch.allclose(detached[1], retained[1])


def _forward_memory(fn, *args):
    # As in the chapter: replay the profiler's allocations and frees; (peak, after) in bytes.
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn(*args)
    now = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        now += event.self_cpu_memory_usage
        peak = max(peak, now)
    return peak, now


def _mlp(depth, width=256):
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


@pytest.mark.parametrize("depth, batch, peak_ratio", [
    (4, 32, 0.92), (4, 2048, 0.54), (8, 2048, 0.36), (1, 8192, 1.00),
])
def test_no_grad_peak_memory_ratios_quoted_in_the_text(depth, batch, peak_ratio):
    torch.manual_seed(0)
    model, data = _mlp(depth), torch.randn(batch, 256)
    base = sum(p.nbytes for p in model.parameters()) + data.nbytes
    peak_g, after_g = _forward_memory(model, data)
    with torch.no_grad():
        peak_n, after_n = _forward_memory(model, data)
    assert round((base + peak_n) / (base + peak_g), 2) == peak_ratio
    # The profiler and the pack hook agree: grad mode holds exactly the activations on top.
    activations = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                   for t in _packs(model, data)}
    for t in [*model.parameters(), data]:
        activations.pop(t.untyped_storage().data_ptr(), None)
    assert after_g - after_n == sum(activations.values())


# ------------------------------------------------------------ activation checkpointing

def test_checkpoint_keeps_only_the_inputs_and_gives_the_same_gradients():
    torch.manual_seed(0)
    lin1, lin2 = nn.Linear(4, 4), nn.Linear(4, 4)
    inp = torch.randn(2, 4, requires_grad=True)
    runs = []

    def block(h):
        runs.append(torch.is_grad_enabled())
        return torch.tanh(lin2(torch.tanh(lin1(h))))

    plain, kept = _packs(block, inp), _packs(lambda h: checkpoint(block, h, use_reentrant=False), inp)
    assert len(plain) == 6 and len(kept) == 1 and kept[0] is inp
    params = [inp, *lin1.parameters(), *lin2.parameters()]
    want = torch.autograd.grad(block(inp).sum(), params)
    runs.clear()
    out = checkpoint(block, inp, use_reentrant=False)
    assert len(runs) == 1
    got = torch.autograd.grad(out.sum(), params)
    assert len(runs) == 2                         # the recomputation, during backward
    assert all(torch.equal(g, w) for g, w in zip(got, want))


def test_reentrant_checkpoint_of_data_leaves_the_weights_without_gradient():
    first = nn.Linear(3, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = checkpoint(first, torch.randn(2, 3), use_reentrant=True)
        default = checkpoint(first, torch.randn(2, 3))                   # use_reentrant left out
    messages = [str(w.message) for w in caught]
    assert not out.requires_grad and not default.requires_grad         # the default: reentrant
    assert any("None of the inputs have requires_grad=True" in m for m in messages)
    assert any("use_reentrant parameter should be passed explicitly" in m for m in messages)


# ------------------------------------------------------------ the executed chapter

def output_of(marker):
    return nbexec.output_of(PATH, marker)


def _table(text):
    """Rows of a printed ' | '-separated table, header skipped, blank lines dropped."""
    rows = [[c.strip() for c in line.split("|")] for line in text.splitlines() if "|" in line]
    return rows[1:]


def _mb(cell):
    return float(cell.split()[0])


def test_chapter_uses_torch_profiler_in_an_optional_section_after_the_exercises():
    nb = json.loads(PATH.read_text())
    sources = ["".join(c["source"]) for c in nb["cells"]]
    assert not any("torch.autograd.profiler" in s for s in sources)
    headings = [i for i, s in enumerate(sources) if s.startswith("## ")]
    titles = [sources[i].splitlines()[0] for i in headings]
    optional = next(i for i, t in zip(headings, titles) if t.startswith("## 7. Optional"))
    exercises = next(i for i, t in zip(headings, titles) if t.startswith("## 6. Exercises"))
    assert exercises < optional
    profiler = [i for i, s in enumerate(sources) if "from torch.profiler import" in s]
    assert profiler and all(i > optional for i in profiler)
    assert "optional" in sources[optional].lower().split("\n", 3)[2]   # said in its first lines


def test_the_checkpointed_block_runs_again_during_backward():
    text = output_of('print("forward:")')
    assert text.split() == ["forward:", "block's", "forward", "runs", "backward:", "block's", "forward", "runs"]
    text = output_of("rebuilt = out_ckpt.grad_fn._saved_result")
    assert text.count("block's forward runs") == 2            # the forward, then the read
    assert text.index("now read one saved tensor") < text.rindex("block's forward runs")
    assert "the rebuilt tensor equals the output: True" in text


def test_checkpoint_saves_one_tensor_the_input_and_draws_the_same_nodes():
    text = output_of('_, kept = record_saves(')
    assert "plain:        6 saves" in text and "checkpointed: 1 save" in text
    assert "and it is the input: True" in text
    assert "the same Nodes as the plain graph: True" in output_of("picture = draw(out_ckpt, names)")


def test_checkpointing_keeps_fewer_activations_and_recomputes_each_layer_once():
    rows = {r[0]: r for r in _table(output_of("for per_segment in [None, 1, 2, 4, 8]:\n    run ="))}
    plain = _mb(rows["no checkpoint"][2])
    kept = {k: _mb(rows[k][2]) for k in ("1", "2", "4", "8")}
    assert plain == 16.0 and kept["1"] == plain                    # "segments of 1 keep all 16 MB"
    assert kept["4"] == plain / 4 and kept["8"] < kept["4"] < kept["2"] < plain
    assert rows["no checkpoint"][3] == "9" and {rows[k][3] for k in kept} == {"17"}
    assert {r[4] for r in rows.values()} == {"True"}              # bit-for-bit the same gradients


def test_checkpointing_peak_in_the_optional_section():
    rows = {r[0]: _mb(r[1]) for r in _table(output_of("peak, after = memory_during(training_step("))}
    plain = rows["no checkpoint"]
    assert abs(rows["1"] - plain) < 0.05 * plain                    # "change nothing"
    assert rows["2"] < 0.6 * plain and rows["4"] < 0.6 * plain       # "about 10 MB" of 18
    assert 0.85 * plain < rows["8"] < plain                          # "close to the plain one"


def test_a_lambda_in_a_loop_gives_a_silently_wrong_gradient():
    assert "same gradient for layers[0].weight: False" in output_of("reads i when called")


def test_use_reentrant_false_fixes_and_leaving_it_out_means_true():
    text = output_of("default = checkpoint(first, torch.randn(2, 3))")
    assert "first.weight.grad is set: True" in text
    assert "left out: the output requires grad: False" in text
    assert "use_reentrant parameter should be passed explicitly" in text


# ------------------------------------------------------------ chapter noise



def _leaf_x(svg):
    """{leaf label: left x} of the leaf boxes in a drawn diagram."""
    found = {}
    for group in re.findall(r'<g id="[^"]+" class="node ag&#45;leaf">(.*?)</g>', svg, re.S):
        label = re.search(r">([^<]+)</text>", group).group(1)
        xs = [float(p.split(",")[0]) for p in re.search(r'points="([^"]+)"', group).group(1).split()]
        found[label] = min(xs)
    return found


def test_before_and_after_backward_pictures_keep_the_leaves_in_place():
    nb = nbexec.executed(PATH)
    pictures = []
    for cell in nb.cells:
        if cell.cell_type == "code" and ('draw(loss, {"x": x, "w": w, "b": b}' in cell.source):
            pictures += [o["data"]["image/svg+xml"] for o in cell.outputs if "image/svg+xml" in o.get("data", {})]
    assert len(pictures) == 3           # before, after (freed), and with retain_graph
    orders = [sorted(_leaf_x(svg), key=_leaf_x(svg).get) for svg in pictures]
    assert orders[0] == orders[1] == orders[2], orders
