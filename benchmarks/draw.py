"""How fast is helpers.draw compared with torchviz.make_dot, and how deep can it go?

Prints figures; asserts nothing. Targets: draw() at most 1.2x make_dot(...).pipe("svg")
on a graph of about 300 nodes; chains thousands of ops deep draw (make_dot's
recursive walk stops near Python's recursion limit).

    python benchmarks/draw.py
"""
import statistics
import sys
import time

import torch
import torchviz

from helpers import draw
from helpers.render import layout_command
from helpers.walk import count_nodes

REPEATS = 5


def mlp_graph(layers):
    """A tanh MLP's loss: each layer adds about 7 nodes (leaves, AccumulateGrads, ops)."""
    torch.manual_seed(0)
    h = torch.randn(4, 8)
    params = {}
    for i in range(layers):
        w = torch.randn(8, 8, requires_grad=True)
        b = torch.zeros(8, requires_grad=True)
        params[f"w{i}"], params[f"b{i}"] = w, b
        h = torch.tanh(h @ w + b)
    return h.sum(), params


def chain(n):
    x = torch.tensor(1.0, requires_grad=True)
    h = x
    for _ in range(n):
        h = h * 1.0001
    return h


def best_of(fn, repeats=REPEATS):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def compare():
    print(f"Layout by: {layout_command()[1]}")
    print(f"{'nodes':>6} {'draw() s':>10} {'make_dot s':>11} {'ratio':>6}")
    for layers in (14, 43, 143):
        loss, params = mlp_graph(layers)
        n = count_nodes([loss])
        ours = best_of(lambda: draw(loss, params).svg)
        theirs = best_of(lambda: torchviz.make_dot(loss, params).pipe(format="svg"))
        target = "  (target <= 1.2 at ~300)" if 250 < n < 350 else ""
        print(f"{n:>6} {ours:>10.3f} {theirs:>11.3f} {ours / theirs:>6.2f}{target}")


def deepest(limit_seconds=60):
    print("\nDeep chains (one mul per op):")
    for depth in (500, 1000, 2000, 5000, 10000):
        h = chain(depth)
        try:
            t = time.perf_counter()
            torchviz.make_dot(h).source
            theirs = f"{time.perf_counter() - t:.2f} s"
        except RecursionError:
            theirs = "RecursionError"
        t = time.perf_counter()
        draw(h, max_nodes=depth + 10).svg
        ours = time.perf_counter() - t
        print(f"  depth {depth:>6}: draw() laid out in {ours:6.2f} s; make_dot walk: {theirs}")
        if ours > limit_seconds:
            break
    print(f"  deepest chain drawn: {depth} ops (Python recursion limit {sys.getrecursionlimit()})")


if __name__ == "__main__":
    compare()
    deepest()
