"""Chapter 01's exercises: every plausible wrong answer fails with one line, the solution passes."""
import pytest
import torch

from exercise_harness import check_exercises
from helpers import checks
from helpers.exercises import run

NAMES = ('{"SumBackward0", "IndexSelectBackward0", "WhereBackward0", "MulBackward0", '
         '"ExpBackward0", "AccumulateGrad"}')

# The correct solution of exercise 2, with one line changed per wrong answer below.
PATHS = '''
def count_paths(t, leaf):
    waiting, stack = {}, [t.grad_fn]
    while stack:
        for nxt in NEXT(stack.pop()):
            if nxt is not None:
                if nxt not in waiting:
                    stack.append(nxt)
                waiting[nxt] = waiting.get(nxt, 0) + 1
    paths, ready = {t.grad_fn: 1}, [t.grad_fn]
    while ready:
        node = ready.pop()
        if getattr(node, "variable", None) is leaf:
            return paths[node]
        for nxt in NEXT(node):
            if nxt is not None:
                paths[nxt] = paths.get(nxt, 0) + paths[node]
                waiting[nxt] -= 1
                if waiting[nxt] == 0:
                    ready.append(nxt)
    return 0
'''

GIVEN3 = "import math\n\nw_val, x_val, b_val = 0.5, 2.0, -0.3\nv = w_val * x_val + b_val\n"
GIVEN4 = ("p = torch.tensor([1.0, 2.0], requires_grad=True)\n"
          "q = torch.tensor([3.0, 4.0], requires_grad=True)\n")

WRONG = {
    "01_ex1": [
        # The comparison a > 1.5 taken for a recorded operation.
        (f"node_names = {NAMES[:-1]}, 'GtBackward0'}}\nn_nodes = 8\n"
         "entries = {'WhereBackward0': 2, 'IndexSelectBackward0': 1}", "'GtBackward0' should not be there"),
        # b used twice counted as two AccumulateGrad Nodes.
        (f"node_names = {NAMES}\nn_nodes = 8\nentries = {{'WhereBackward0': 2, 'IndexSelectBackward0': 1}}",
         "`n_nodes` is too large"),
        # The condition counted as an input of where.
        (f"node_names = {NAMES}\nn_nodes = 7\nentries = {{'WhereBackward0': 3, 'IndexSelectBackward0': 1}}",
         "the value for 'WhereBackward0' is too large"),
        # The index counted as an input of index_select.
        (f"node_names = {NAMES}\nn_nodes = 7\nentries = {{'WhereBackward0': 2, 'IndexSelectBackward0': 2}}",
         "the value for 'IndexSelectBackward0' is too large"),
        # AccumulateGrad forgotten.
        ("node_names = {'SumBackward0', 'IndexSelectBackward0', 'WhereBackward0', 'MulBackward0', "
         "'ExpBackward0'}\nn_nodes = 5\nentries = {'WhereBackward0': 2, 'IndexSelectBackward0': 1}",
         "1 item is missing"),
        # The right numbers, in a list instead of a dict.
        (f"node_names = {NAMES}\nn_nodes = 7\nentries = [2, 1]", "`entries` should be a dict, not a list"),
    ],
    "01_ex2": [
        # A walk that visits each Node once counts the leaf once, not once per path.
        ('def count_paths(t, leaf):\n    seen, stack, n = set(), [t.grad_fn], 0\n    while stack:\n'
         '        node = stack.pop()\n        if node is None or node in seen:\n            continue\n'
         '        seen.add(node)\n        n += getattr(node, "variable", None) is leaf\n'
         '        stack.extend(m for m, _ in node.next_functions)\n    return n',
         "`count_paths(w * w + w, w)` is too small"),
        # Both slots of w * w go to one Node: de-duplicating the entries loses a path.
        (PATHS.replace("NEXT(stack.pop())", "{n for n, _ in stack.pop().next_functions}")
              .replace("NEXT(node)", "{n for n, _ in node.next_functions}"),
         "`count_paths(w * w + w, w)` is too small"),
        # Following every path one by one: right, but 2**60 paths never finish.
        ('def count_paths(t, leaf):\n    def paths(node):\n        if node is None:\n            return 0\n'
         '        if getattr(node, "variable", None) is leaf:\n            return 1\n'
         '        return sum(paths(m) for m, _ in node.next_functions)\n    return paths(t.grad_fn)',
         "did not finish in 10 s"),
        # Memoised recursion: fast, but Python's recursion limit stops it on the deep chain.
        ('def count_paths(t, leaf):\n    memo = {}\n    def paths(node):\n        if node is None:\n'
         '            return 0\n        if getattr(node, "variable", None) is leaf:\n            return 1\n'
         '        if node not in memo:\n            memo[node] = sum(paths(m) for m, _ in node.next_functions)\n'
         '        return memo[node]\n    return paths(t.grad_fn)',
         "raised RecursionError"),
        # Counting the Nodes on the way instead of the paths.
        ('def count_paths(t, leaf):\n    seen, stack = set(), [t.grad_fn]\n    while stack:\n'
         '        node = stack.pop()\n        if node is not None and node not in seen:\n'
         '            seen.add(node)\n            stack.extend(m for m, _ in node.next_functions)\n'
         '    return len(seen)', "`count_paths(the line loss, w)` is too large"),
        # The stub left as it is.
        ("def count_paths(t, leaf):\n    raise NotImplementedError()", "not implemented yet"),
        # The count computed, but never returned.
        (PATHS.replace("NEXT(stack.pop())", "(n for n, _ in stack.pop().next_functions)")
              .replace("NEXT(node)", "(n for n, _ in node.next_functions)")
              .replace("            return paths[node]", "            count = paths[node]\n            break")
              .replace("    return 0\n", ""),
         "returned None: is a `return` missing?"),
    ],
    "01_ex3": [
        # Only the path through sin: the direct factor w forgotten.
        (GIVEN3 + "dloss_dw = math.cos(v) * x_val * w_val\ndloss_db = math.cos(v) * w_val",
         "`dloss_dw` is too small"),
        # Only the direct path: the path through sin forgotten.
        (GIVEN3 + "dloss_dw = math.sin(v)\ndloss_db = math.cos(v) * w_val", "`dloss_dw` is too small"),
        # dloss_db without the outer factor w.
        (GIVEN3 + "dloss_dw = math.cos(v) * x_val * w_val + math.sin(v)\ndloss_db = math.cos(v)",
         "`dloss_db` is too large"),
        # The derivative of sin taken as -cos.
        (GIVEN3 + "dloss_dw = -math.cos(v) * x_val * w_val + math.sin(v)\ndloss_db = -math.cos(v) * w_val",
         "`dloss_dw` has the wrong sign"),
        # Rounded by hand.
        (GIVEN3 + "dloss_dw = 1.41\ndloss_db = 0.38", "`dloss_dw` is too large (by less than 1%)"),
    ],
    "01_ex4": [
        # The classic answer: `* 3` turns 3 into a tensor, which gets a (None, 0) entry.
        (GIVEN4 + "built = (p * q * p * 3).sum()",
         "`the number of (None, 0) entries in the graph` is too large"),
        # A data tensor as the third factor.
        (GIVEN4 + "built = (p * q * p * torch.ones(2)).sum()",
         "`the number of (None, 0) entries in the graph` is too large"),
        # Two multiplications only.
        (GIVEN4 + "built = (p * q * p).sum()", "`the number of MulBackward0 Nodes` is too small"),
        # Three multiplications, but p in three slots.
        (GIVEN4 + "built = (p * q * p * p).sum()", "`the number of input slots p fills` is too large"),
        # q twice.
        (GIVEN4 + "built = (p * q * (p * q)).sum()", "`the number of input slots q fills` is too large"),
        # mean instead of sum.
        (GIVEN4 + "h = p * q\nbuilt = (h * h * p).mean()", "`the name of built.grad_fn` is not quite right"),
        # Built from a copy of p (an older p, run again): a leaf the exercise did not give.
        (GIVEN4 + "other = p.detach().clone().requires_grad_()\nh = other * q\nbuilt = (h * h * other).sum()",
         "'a leaf other than p and q' should not be there"),
        # Not reduced to one number.
        (GIVEN4 + "h = p * q\nbuilt = h * h * p", "`built` should be a single number"),
        # A Python number: .item() leaves the graph behind.
        (GIVEN4 + "h = p * q\nbuilt = (h * h * p).sum().item()", "not a float"),
    ],
    "01_ex5": [
        # The abs() overlooked: x3's largest value taken as 0.2.
        ("n_div = [1, 0, 3]\nn_mul = [3, 4, 1]", "`n_div for x3` is too large"),
        # Every round taken for a multiplication.
        ("n_div = [0, 0, 0]\nn_mul = [4, 4, 4]", "`n_div for x1` is 0, and it should not be"),
        # y * y taken for a PowBackward0.
        ("n_div = [1, 0, 2]\nn_mul = [0, 0, 0]", "`n_mul for x1` is 0, and it should not be"),
        # The loop's comparison counted as a division or multiplication.
        ("n_div = [1, 0, 2]\nn_mul = [4, 4, 4]", "`n_mul for x1` is too large"),
        # Two inputs only.
        ("n_div = [1, 0]\nn_mul = [3, 4]", "`n_div` has too few items"),
        # A comma at the end of the line makes a tuple that holds the list.
        ("n_div = [1, 0, 2]\nn_mul = [3, 4, 2],", "`n_mul` is a tuple that holds your list"),
        # Tensors instead of lists: still named by input, not "item 2".
        ("import torch\nn_div = torch.tensor([1, 0, 2])\nn_mul = torch.tensor([3, 4, 3])",
         "`n_mul for x3` is too large"),
    ],
}


def test_each_wrong_answer_fails_with_one_line_and_the_solution_passes():
    check_exercises("01", WRONG)


def test_count_paths_grading_cases_hold_what_their_construction_says():
    """The verifier's expected path counts come from how each graph was built; check them
    here against an independent count (memoised recursion, fine at these depths)."""
    import sys
    from helpers.exercises.ch01 import _graphs

    def paths(node, leaf, memo):
        if node is None:
            return 0
        if getattr(node, "variable", None) is leaf:
            return 1
        if node not in memo:
            memo[node] = sum(paths(m, leaf, memo) for m, _ in node.next_functions)
        return memo[node]

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20000)
    try:
        for label, root, leaf, expected in _graphs(graded=True):
            assert paths(root.grad_fn, leaf, {}) == expected, label
    finally:
        sys.setrecursionlimit(limit)


def test_predict_answers_are_not_names_in_the_notebook():
    """Exercise 1's and 5's graphs are built only inside the verifiers."""
    from nbexec import SOLUTIONS
    import nbformat
    nb = nbformat.read(SOLUTIONS / "01_computational_graphs.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "halve_or_square" not in code and "picked.index_select" not in code


@pytest.mark.parametrize("n_div, n_mul, says", [
    ([1, 0, 2], [3, 4, 2], None),
    ((1, 0, 2), (3, 4, 2), None),
    ([1, 0, 2], [3, 4, "2"], "`n_mul for x3` should be an integer, not the string '2'"),
    ([True, 0, 2], [3, 4, 2], "`n_div for x1` should be an integer"),
])
def test_ex5_verifier_directly(capsys, n_div, n_mul, says):
    if says is None:
        run("01_ex5", {"n_div": n_div, "n_mul": n_mul})
        assert "✅" in capsys.readouterr().out
    else:
        with pytest.raises(checks.CheckFailed, match=says):
            run("01_ex5", {"n_div": n_div, "n_mul": n_mul})


def test_ex2_graphs_leave_the_random_state_alone():
    from helpers.exercises.ch01 import _graphs
    state = torch.get_rng_state()
    assert len(list(_graphs(graded=True))) == 8
    assert torch.equal(state, torch.get_rng_state())


def test_ex4_verifier_leaves_p_and_q_alone():
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    q = torch.tensor([3.0, 4.0], requires_grad=True)
    h = p * q
    run("01_ex4", {"p": p, "q": q, "built": (h * h * p).sum()})
    assert p.grad is None and q.grad is None
