"""Checks for chapter 04's exercises (hooks).

Expected values are computed inside each function, without the hooks the exercises
ask for: gradients by hand (the chain rule written out for a chain of Linear and
Tanh layers), ``torch.where`` for clipping, and a run of the real firing experiment.
"""
import copy
import warnings

import torch
from torch import nn
from torch.autograd.graph import saved_tensors_hooks

from .. import checks
from ..exercises import exercise


def _quiet(thunk):
    """thunk() with warnings silenced: a check shows one line, not PyTorch's warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return thunk()


def _hooks_of(tensor):
    """The tensor hooks registered on ``tensor`` (a leaf), in order."""
    hooks = getattr(tensor, "_backward_hooks", None) or {}
    return list(hooks.values())


def _same(name, got, want):
    """Pass silently when ``got`` matches ``want``; otherwise let check_value say what is off."""
    if not (isinstance(got, torch.Tensor) and got.shape == want.shape and got.dtype == want.dtype
            and torch.allclose(got, want, rtol=1e-4, atol=1e-6)):
        checks.check_value(name, got, want)


def _untouched_by(name, hook, grad):
    """Call ``hook(grad)`` on a copy; fail if it changed its argument in place. Returns its result."""
    given = grad.clone()
    result = checks.call(hook, given, what=name)
    if not torch.equal(given, grad):
        checks.fail(f"{name} changed the gradient it was given in place: return a new tensor instead.")
    return result


# ------------------------------------------------------------------ exercise 1

@exercise("04_ex1")
def ex1(make_clip_hook, *, graded=False):
    gen = torch.Generator().manual_seed(4)
    cases = [(1.0, torch.float32), (0.5, torch.float32)]
    if graded:
        cases.append((0.25, torch.float64))
    for limit, dtype in cases:
        hook = checks.call(make_clip_hook, limit, what=f"make_clip_hook({limit})")
        if not callable(hook):
            checks.fail(f"`make_clip_hook({limit})` should return a function (the hook), "
                        f"not {checks._a(hook)}.")
        g = torch.tensor([2.0, -3.0, 0.1, -0.3, 0.7, -0.6], dtype=dtype)
        out = _untouched_by(f"the hook from make_clip_hook({limit})", hook, g)
        if out is None:
            checks.fail(f"the hook from `make_clip_hook({limit})` returns None: return the clipped "
                        f"gradient, or backward uses the gradient unclipped.")
        want = torch.where(g.abs() > limit, limit * torch.sign(g), g)
        _same(f"the hook from make_clip_hook({limit}) on [2, -3, 0.1, -0.3, 0.7, -0.6]", out, want)
        # And in a real backward: the gradient reaching h is c; x.grad is the clipped c times 3x².
        x = torch.randn(6, generator=gen, dtype=dtype).requires_grad_()
        c = torch.tensor([3.0, -0.2, 0.7, -5.0, 1.5, 0.1], dtype=dtype)
        h = x ** 3
        h.register_hook(hook)
        got, = checks.call(lambda: torch.autograd.grad((h * c).sum(), x),
                           what=f"a backward with make_clip_hook({limit}) on an intermediate")
        clipped = torch.where(c.abs() > limit, limit * torch.sign(c), c)
        _same(f"the gradient of x through make_clip_hook({limit})", got, clipped * 3 * x.detach() ** 2)
    checks._passed("✅ make_clip_hook: the hook clips, leaves its argument alone, and works in backward.")


# ------------------------------------------------------------------ exercise 2

def _by_hand(model, x):
    """{Linear's name: norm of d(mean(model(x)**2))/d(its output)}, by the chain rule written out.

    ``model`` is a chain (nn.Sequential, possibly nested) of nn.Linear and nn.Tanh."""
    chain = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Tanh))]
    with torch.no_grad():
        outs, h = [], x
        for _, m in chain:
            h = m(h)
            outs.append(h)
        g = 2 * h / h.numel()                      # d mean(y²) / dy
        norms = {}
        for k in range(len(chain) - 1, -1, -1):
            name, m = chain[k]
            if isinstance(m, nn.Linear):
                norms[name] = g.norm().item()
                g = g @ m.weight
            else:                                  # tanh: d tanh(z) = 1 - tanh(z)²
                g = g * (1 - outs[k] ** 2)
    return {n: norms[n] for n, _ in chain if n in norms}


def _module_hooks(model):
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) + len(m._backward_pre_hooks)
               + len(m._backward_hooks) for m in model.modules())


@exercise("04_ex2")
def ex2(grad_norms, *, graded=False):
    with torch.random.fork_rng(devices=[]):       # the learner's random numbers stay as they were
        torch.manual_seed(42)
        models = [nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 2))]
        if graded:
            models.append(nn.Sequential(nn.Linear(3, 4), nn.Tanh(),
                                        nn.Sequential(nn.Linear(4, 4), nn.Tanh()), nn.Linear(4, 1)).double())
        inputs = [torch.randn(10, m[0].in_features, dtype=m[0].weight.dtype) for m in models]
    for model, x in zip(models, inputs):
        want = _by_hand(model, x)
        before = {}
        for name, p in model.named_parameters():   # a gradient already accumulated by training
            p.grad = torch.full_like(p, 0.5)
            before[name] = p.grad.clone()
        got = _quiet(lambda: checks.call(grad_norms, model, x, what="grad_norms(model, x)"))
        if not isinstance(got, dict):
            checks.fail(f"`grad_norms(model, x)` should return a dict {{name: norm}}, not {checks._a(got)}.")
        if len(got) == 1 and len(want) > 1:
            checks.fail(f"`grad_norms(model, x)` returns 1 entry ({next(iter(got))!r}); the model has "
                        f"{len(want)} Linear layers: does each hook write under its own layer's name?")
        if set(got) != set(want):
            checks.check_equal("the layer names in grad_norms(model, x)", set(got), set(want))
        checks.check_equal("grad_norms(model, x)", {k: got[k] for k in want}, want, rtol=1e-4, atol=1e-7)
        left = _module_hooks(model)
        if left:
            checks.fail(f"`grad_norms(model, x)` left {left} hook{'s' if left > 1 else ''} on the model: "
                        f"remove every hook it adds before returning.")
        changed = [name for name, p in model.named_parameters()
                   if p.grad is None or not torch.equal(p.grad, before[name])]
        if changed:
            checks.fail(f"`grad_norms(model, x)` changed `{changed[0]}.grad`: it should leave every "
                        f"parameter's .grad as it was.")


# ------------------------------------------------------------------ exercise 3

@exercise("04_ex3")
def ex3(freeze_where, *, graded=False):
    gen = torch.Generator().manual_seed(6)
    cases = [((3, 4), torch.float32)]
    if graded:
        cases.append(((2, 5), torch.float64))
    for shape, dtype in cases:
        weight = nn.Parameter(torch.randn(shape, generator=gen, dtype=dtype))
        frozen = torch.zeros(shape, dtype=torch.bool)
        frozen.view(-1)[torch.randperm(frozen.numel(), generator=gen)[: frozen.numel() // 2]] = True
        inputs = torch.randn(5, shape[1], generator=gen, dtype=dtype)
        before = weight.detach().clone()

        handle = checks.call(freeze_where, weight, frozen, what="freeze_where(param, frozen)")
        hooks = _hooks_of(weight)
        if not hooks:
            checks.fail("`freeze_where(param, frozen)` registered no tensor hook on `param`.")
        if handle is None or not hasattr(handle, "remove"):
            checks.fail(f"`freeze_where(param, frozen)` should return the handle that register_hook "
                        f"returns, not {checks._a(handle)}.")
        grad = torch.randn(shape, generator=gen, dtype=dtype)
        out = _untouched_by("the hook of freeze_where", hooks[-1], grad)
        if out is None:
            checks.fail("the hook of `freeze_where` returns None: return the masked gradient, or "
                        "backward uses the gradient unchanged.")

        optimizer = torch.optim.SGD([weight], lr=0.1)
        checks.call(lambda: (inputs @ weight.T).pow(2).sum().backward(),
                    what="a backward through a weight with freeze_where's hook")
        optimizer.step()
        moved = weight.detach() != before
        if bool(moved[frozen].any()):
            checks.fail(f"{int(moved[frozen].sum())} of the {int(frozen.sum())} frozen entries moved "
                        f"in an SGD step: their gradient should be zero.")
        if not bool(moved[~frozen].all()):
            checks.fail(f"{int((~moved[~frozen]).sum())} of the {int((~frozen).sum())} entries that are "
                        f"not frozen did not move in an SGD step: their gradient should be unchanged.")
        optimizer.zero_grad()
        handle.remove()
        checks.call(lambda: (inputs @ weight.T).pow(2).sum().backward(),
                    what="a backward after handle.remove()")
        if not bool((weight.grad[frozen] != 0).all()):
            checks.fail("after `handle.remove()`, the frozen entries still get no gradient: does "
                        "freeze_where register more than one hook, or return another handle?")
    checks._passed("✅ freeze_where: frozen entries stay, the others train, and remove() undoes it.")


# ------------------------------------------------------------------ exercise 4

def _tensors_in(packed):
    """The tensors inside what a pack hook returned (looking into tuples, lists and dicts)."""
    if isinstance(packed, torch.Tensor):
        return [packed]
    if isinstance(packed, dict):
        packed = list(packed.values())
    if isinstance(packed, (tuple, list)):
        return [t for item in packed for t in _tensors_in(item)]
    return []


def _check_compressed(compress_saved, make_loss, params, dtype):
    """Run make_loss() under compress_saved(dtype): watch pack and unpack, compare the gradients."""
    hooks = checks.call(compress_saved, dtype, what=f"compress_saved({dtype})")
    if not isinstance(hooks, saved_tensors_hooks):
        checks.fail(f"`compress_saved({dtype})` should return a torch.autograd.graph.saved_tensors_hooks, "
                    f"not {checks._a(hooks)}.")
    reference = torch.autograd.grad(make_loss(), params)     # no hooks: full precision

    seen = {"float bytes": 0, "float bytes kept": 0, "float kept in another dtype": 0, "float kept twice": 0,
            "other dtypes": set(), "other": 0, "other as is": 0}

    def watch_pack(t):                       # calls your pack and looks at what it returns
        packed = checks.call(hooks.pack_hook, t, what=f"the pack hook of compress_saved({dtype})")
        if packed is None:
            checks.fail("your pack returns None: autograd stores what pack returns, so return what "
                        "unpack needs to rebuild the tensor.")
        kept = _tensors_in(packed)
        if t.is_floating_point():
            seen["float bytes"] += t.numel() * torch.finfo(dtype).bits // 8
            seen["float bytes kept"] += sum(k.numel() * k.element_size() for k in kept)
            others = {str(k.dtype).replace("torch.", "") for k in kept
                      if k.is_floating_point() and k.dtype != dtype}
            if others:
                seen["float kept in another dtype"] += 1
                seen["other dtypes"] |= others
                seen["float kept twice"] += any(k.dtype == dtype for k in kept)
        else:
            seen["other"] += 1
            seen["other as is"] += len(kept) == 1 and kept[0].dtype == t.dtype and torch.equal(kept[0], t)
        return t.dtype, packed

    def watch_unpack(box):                   # calls your unpack and looks at what it gives back
        saved_as, packed = box
        out = checks.call(hooks.unpack_hook, packed, what=f"the unpack hook of compress_saved({dtype})")
        got = out.dtype if isinstance(out, torch.Tensor) else type(out).__name__
        if got != saved_as:
            checks.fail(f"unpack gave back {got} for a tensor that pack received as {saved_as}.")
        return out

    with saved_tensors_hooks(watch_pack, watch_unpack):
        loss = checks.call(make_loss, what=f"a forward under compress_saved({dtype})")
    if seen["other as is"] != seen["other"]:
        checks.fail(f"your pack does not keep {seen['other'] - seen['other as is']} of the "
                    f"{seen['other']} saved tensors that are not floating point as they are (unchanged, once).")
    if seen["float kept twice"]:
        checks.fail(f"your pack keeps a {' / '.join(sorted(seen['other dtypes']))} tensor next to the {dtype} "
                    f"one: is a full-precision copy kept too?")
    if seen["float kept in another dtype"]:
        n = seen["float kept in another dtype"]
        checks.fail(f"your pack keeps {n} floating-point saved tensor{'s' if n > 1 else ''} "
                    f"as {' / '.join(sorted(seen['other dtypes']))}, not as {dtype}.")
    if seen["float bytes kept"] != seen["float bytes"]:
        more = seen["float bytes kept"] > seen["float bytes"]
        checks.fail(f"your pack keeps {'more' if more else 'fewer'} bytes for the floating-point saved "
                    f"tensors than one copy of each in {dtype}" +
                    (": is a full-precision copy kept too?" if more else "."))
    checks.call(lambda: torch.autograd.grad(loss, params), what=f"a backward under compress_saved({dtype})")

    with hooks:                              # and now as it is meant to be used
        loss = make_loss()
    grads = torch.autograd.grad(loss, params)
    for g, r in zip(grads, reference):
        if g.dtype != r.dtype:
            checks.fail(f"under compress_saved({dtype}), a gradient comes out as {g.dtype}, not {r.dtype}.")
    tolerance = 4 * torch.finfo(dtype).eps   # what rounding the saved tensors to `dtype` may cost
    checks.check_value(f"the gradients under compress_saved({dtype}), each scaled by its largest entry",
                       torch.cat([(g / r.abs().max()).flatten() for g, r in zip(grads, reference)]),
                       torch.cat([(r / r.abs().max()).flatten() for r in reference]), rtol=0, atol=tolerance)


@exercise("04_ex4")
def ex4(compress_saved, *, graded=False):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
        inputs, labels = torch.randn(20, 6), torch.randint(0, 3, (20,))   # cross_entropy saves the labels
        table = nn.Embedding(10, 4)                                       # saves integer ids
    ce = nn.functional.cross_entropy
    _check_compressed(compress_saved, lambda: ce(net(inputs), labels), list(net.parameters()), torch.float16)
    net64 = copy.deepcopy(net).double()                                   # float64 in, float64 back out
    _check_compressed(compress_saved, lambda: ce(net64(inputs.double()), labels), list(net64.parameters()),
                      torch.bfloat16)
    if graded:
        ids = torch.tensor([[1, 2, 7], [3, 3, 0]])                        # max(dim) saves indices
        _check_compressed(compress_saved, lambda: table(ids).max(dim=1).values.exp().sum(),
                          list(table.parameters()), torch.float16)


# ------------------------------------------------------------------ exercise 5

def _firing_experiment():
    events = []
    a = torch.tensor(2.0, requires_grad=True)
    b = a * a
    c = b.exp() + b
    acc = b.grad_fn.next_functions[0][0]
    a.register_post_accumulate_grad_hook(lambda leaf: events.append("a: post-accumulate hook"))
    b.grad_fn.register_hook(lambda grad_inputs, grad_outputs: events.append("b.grad_fn: post-hook"))
    acc.register_hook(lambda grad_inputs, grad_outputs: events.append("AccumulateGrad of a: post-hook"))
    a.register_hook(lambda grad: events.append("a: tensor hook"))
    b.grad_fn.register_prehook(lambda grad_outputs: events.append("b.grad_fn: pre-hook"))
    b.register_hook(lambda grad: events.append("b: tensor hook"))
    c.backward()
    return events


@exercise("04_ex5")
def ex5(predicted):
    real = _firing_experiment()
    labels = set(real)
    if isinstance(predicted, (list, tuple)):
        unknown = [p for p in predicted if p not in labels]
        if unknown:
            checks.fail(f"`predicted` holds {checks._a(unknown[0])}, which is none of the labels: "
                        f"copy the label strings from `labels`.")
    checks.check_equal("predicted", predicted, real)
