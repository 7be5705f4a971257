"""Chapter 08's exercises: each plausible wrong answer fails its check with one line that says
what is off (run through the exercise harness), and the solutions pass."""
from exercise_harness import check_exercises


ALL_OK = ('{"inp.weight": "ok", "inp.bias": "ok", "skip.weight": "no_grad", "skip.bias": "no_grad", '
          '"norm.weight": "unused", "norm.bias": "unused", "scale": "data", "bias": "detached", '
          '"head.weight": "ok", "head.bias": "ok"}')


def walker(record="type(node).__name__", bad="not torch.isfinite(g).all()", grads="gi", pick="order[0]",
           keep=False):
    """A learner's first_bad_node: a hook on every Node that records `record` when a gradient in
    `grads` (gi: what it sends, go: what it receives) is `bad`; returns `pick`. Its hooks stay on
    the graph (with keep=True their handles are kept, but never removed)."""
    names, values = ("order, seen, stack, handles", "[], set(), [loss.grad_fn], []") if keep else \
        ("order, seen, stack", "[], set(), [loss.grad_fn]")
    register = "handles.append(node.register_hook" if keep else "node.register_hook"
    return ("def first_bad_node(loss):\n"
            f"    {names} = {values}\n"
            "    while stack:\n        node = stack.pop()\n        if node is None or node in seen:\n"
            "            continue\n        seen.add(node)\n"
            f"        {register}(lambda gi, go, node=node: order.append({record})\n"
            f"            if any(g is not None and {bad} for g in {grads}) else None{'))' if keep else ')'}\n"
            "        stack.extend(n for n, _ in node.next_functions)\n    loss.backward()\n"
            f"    return {pick} if order else None")


WRONG = {
    "08_ex1": [
        ("causes = " + ALL_OK.replace('"scale": "data"', '"scale": "ok"'),
         "`causes['scale']` is not right: it gets no gradient"),
        ("causes = " + ALL_OK.replace('"scale": "data"', '"scale": "detached"'),
         "`causes['scale']` is not the reason"),
        ("causes = " + ALL_OK.replace('"bias": "detached"', '"bias": "ok"'),
         "`causes['bias']` is not right: it gets no gradient"),
        ("causes = " + ALL_OK.replace('"head.weight": "ok"', '"head.weight": "unused"'),
         "`causes['head.weight']` is not right: it does get a gradient"),
        ("causes = " + ALL_OK.replace('"norm.weight": "unused", "norm.bias": "unused", ', ''),
         "has no entry for 'norm.weight'"),
        ("causes = " + ALL_OK.replace('"skip.bias": "no_grad"', '"skip.bias": "None"'),
         "`causes['skip.bias']` should be one of"),
        ("causes = [('scale', 'data')]", "should be a dict"),
    ],
    "08_ex2": [
        ("def rescale_fixed(x):\n    return rescale(x)", "inplace"),
        ("def rescale_fixed(x):\n    y = x.detach().exp()\n    y = y / y.sum()\n    return (y - 0.5) * x",
         "gradient"),
        ("def rescale_fixed(x):\n    y = x.exp()\n    y = y / y.sum()\n    return y * x",
         "rescale_fixed(x) for a torch.float64 x"),
        ("def rescale_fixed(x):\n    y = x.exp()\n    y = y / y.sum() - 0.5\n    return (y * x).detach().numpy()",
         "should return a tensor"),
        # The last line computes the result but does not return it.
        ("def rescale_fixed(x):\n    y = x.exp()\n    y = y / y.sum()\n    y = y - 0.5\n    y * x",
         "`rescale_fixed` returned None: is a `return` missing?"),
    ],
    "08_ex3": [
        ("def distance(a, b):\n    return ((a - b) ** 2).sum().sqrt()", "is not finite"),
        ("def distance(a, b):\n    return torch.linalg.vector_norm(a - b)", "uses LinalgVectorNormBackward0"),
        ("def distance(a, b):\n    return (((a - b) ** 2).sum() + 1e-8).sqrt()", "distance on two equal vectors"),
        ("def distance(a, b):\n    sq = ((a - b) ** 2).sum()\n"
         "    return torch.where(sq > 0, sq.sqrt(), torch.zeros_like(sq))", "is not finite"),
        ("def distance(a, b):\n    return (a - b).abs()", "single-number tensor, not a tensor of shape (4,)"),
        # A Python float: torch's warning about it stays out of the one line of feedback.
        ("def distance(a, b):\n    return float(((a - b) ** 2).sum().sqrt())",
         "should return a single-number tensor, not a float"),
    ],
    "08_ex4": [
        # looks at what a Node receives instead of what it sends
        (walker(grads="go", keep=True), "is not the first Node that sends"),
        # the last bad Node, not the first
        (walker(pick="order[-1]"), "is not the first Node that sends"),
        # only NaN, not inf
        (walker(bad="torch.isnan(g).any()"), "returned None, but a Node does send"),
        ("def first_bad_node(loss):\n    return None", "did not run the backward pass"),
        # right, but its hooks stay on the graph
        (walker(), "hooks on the graph: remove them before it returns"),
        # the Node itself instead of its class name
        (walker(record="node"), "(a string), not the Node itself"),
        ("def first_bad_node(loss):\n    from helpers import trace_backward\n"
         "    step = trace_backward(loss).first_nonfinite()\n    loss.backward()\n"
         "    return step and step.name", "uses the course's helpers"),
    ],
}


def test_wrong_answers_fail_with_one_line_and_solutions_pass():
    check_exercises("08", WRONG)


def test_ex1_check_leaves_the_random_state_alone_and_passes_with_one_line(capsys):
    import torch
    from torch import nn
    from helpers.exercises import run

    class Relay(nn.Module):   # as in the notebook
        def __init__(self):
            super().__init__()
            self.inp, self.skip, self.norm = nn.Linear(4, 4), nn.Linear(4, 4), nn.LayerNorm(4)
            self.scale, self.bias = nn.Parameter(torch.tensor(2.0)), nn.Parameter(torch.zeros(4))
            self.head = nn.Linear(4, 1)

        def forward(self, x):
            h = torch.relu(self.inp(x))
            with torch.no_grad():
                s = self.skip(x)
            return self.head(h * self.scale.data + s + self.bias.detach()).sum()

    relay = Relay()
    state = torch.get_rng_state()
    run("08_ex1", {"causes": eval(ALL_OK), "relay": relay})
    assert torch.equal(state, torch.get_rng_state())
    assert capsys.readouterr().out == "✅ 08_ex1: right.\n"
