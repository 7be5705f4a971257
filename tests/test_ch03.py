"""Chapter 03's claims about saved tensors, checked against the installed PyTorch.

The chapter's prose says which operations save what, that a pack hook sees a
tensor saved twice twice, that no_grad saves nothing, that summing two losses
gives the gradients of two backward passes, and that retain_graph in a chunked
RNN loop changes the gradients. If a PyTorch release changes one of these, the
chapter text must change with it.
"""
import pytest
import torch
from torch import nn


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
    from torch.autograd.profiler import profile
    with profile(profile_memory=True) as prof:
        out = fn(*args)
    now = peak = 0
    for event in sorted(prof.function_events, key=lambda e: e.time_range.start):
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
