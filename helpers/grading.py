"""What nbgrader's hidden tests run: the exercise checks, from fresh copies a learner's cell cannot reach.

Under ``nbgrader autograde`` a learner's answer cells run in the same kernel as
the grade cells, so an answer cell could replace ``helpers.checks.check_value``
with a function that passes everything, swap ``sys.modules["helpers.grading"]``,
or patch a builtin such as ``isinstance``. The hidden test in every grade cell
(``snippet(exercise_id)`` below, the same text in every cell but the id) does
not trust any of that:

1. It checks, with references that only Python's syntax can produce
   (``().__class__.__class__`` is the real ``type``, ``[].append.__class__`` the
   real type of built-in functions), that ``__import__``, ``sys``, ``open``,
   ``compile`` and ``exec`` are Python's own.
2. It finds ``helpers/`` with the import system's finders (not ``sys.modules``,
   which a cell can fill with anything) and runs this file from disk.
3. ``grade`` checks every builtin the same way and fails the cell, naming the
   builtin, if a cell replaced one. It then runs this file once more with only
   the genuine builtins, and ``_grade`` loads fresh copies of ``helpers.checks``,
   ``helpers.exercises`` and the chapter's module from their files, with an
   import function that hands these fresh copies to each other. Nothing is
   written to ``sys.modules``: the learner's code, called by the verifier, sees
   only the copies the notebook imported.
4. The verifier runs with ``graded=True``; a failure fails the cell (0 points).

What this does not defend against -- code that walks the garbage collector or
stack frames, ``ctypes``, objects crafted to fake their identity, patches to
``torch`` or to IPython itself, or files written over ``helpers/`` -- is listed
in INSTRUCTORS.md. In-kernel grading cannot be airtight (nbgrader's docs say
as much); run autograde in a sandbox when that matters.

Until ``grade`` has checked the builtins, the code below uses no builtin name:
this file first runs with an empty ``__builtins__``, so it holds only ``def``
statements and literals at module level (no imports, no classes).
"""

SNIPPET = '''\
def _autograd_lab_grade(i=__import__, t=().__class__.__class__, f=[].append.__class__):
    # Python's own __import__, sys, open, compile and exec: see INSTRUCTORS.md, "Grading".
    assert t(i) is f and i.__name__ == "__import__", "grading needs Python's own __import__"
    g = i("sys")._getframe
    assert t(g) is f and g.__name__ == "_getframe", "grading needs Python's own sys"
    b = i.__self__.__dict__
    for n in "open", "compile", "exec":
        assert t(b[n]) is f and b[n].__name__ == n, "grading needs Python's own " + n
    for m in g.__self__.meta_path:
        s = m.find_spec("helpers", None)
        if s:
            break
    p = s.submodule_search_locations[0] + "/grading.py"
    n = {"__builtins__": {}, "__file__": p}
    with b["open"](p, encoding="utf-8") as h:
        b["exec"](b["compile"](h.read(), p, "exec"), n)
    n["grade"]("EXERCISE_ID", g(1).f_globals, i, g.__self__)
try:
    _autograd_lab_grade()
finally:
    del _autograd_lab_grade'''

# Builtins that are not Python's own in a Jupyter kernel, and need not be: site's
# help/exit/copyright objects, IPython's and ipykernel's additions, module metadata.
_NOT_CHECKED = ("__name__", "__doc__", "__package__", "__loader__", "__spec__", "__IPYTHON__",
                "input", "copyright", "credits", "license", "help", "exit", "quit", "execfile",
                "runfile", "display", "get_ipython", "ExceptionGroup", "_")


def snippet(exercise_id):
    """The hidden test of ``exercise_id``'s grade cell (between the HIDDEN TESTS markers)."""
    return SNIPPET.replace("EXERCISE_ID", exercise_id)


def grade_cell(exercise_id):
    """The whole source of ``exercise_id``'s grade cell: the visible check and the hidden test."""
    return (f'checks.exercise("{exercise_id}")\n### BEGIN HIDDEN TESTS\n'
            f"{snippet(exercise_id)}\n### END HIDDEN TESTS")


def grade(exercise_id, namespace, i, sys, t=().__class__.__class__, f=[].append.__class__):
    """Check the builtins, then grade ``exercise_id`` with fresh copies of the checks.

    ``i`` is Python's own ``__import__`` and ``sys`` the real ``sys`` module (the
    hidden test checked both). Runs before any builtin is trusted: no builtin names here.
    """
    module = i.__self__
    b = module.__dict__
    clean, replaced = {}, []
    for k, v in b.items():
        if t(k) is not "".__class__:
            replaced.append("a builtin that is not a name")
        elif k in _NOT_CHECKED:
            clean[k] = v
        elif t(v) is f and v.__name__ == k and (v.__self__ is module or k == "open"):
            clean[k] = v   # a built-in function
        elif t(v) is t and not v.__flags__ & 512 and v.__name__ == k:
            clean[k] = v   # a built-in class (not a heap type: no cell can define one)
        elif (k == "None" and v is None or k == "True" and v is True or k == "False" and v is False
              or k == "Ellipsis" and v is ... or k == "NotImplemented" and v is ().__eq__(0)
              or k == "__debug__" and (v is True or v is False)):
            clean[k] = v
        elif (k == "EnvironmentError" or k == "IOError") and v is b["OSError"] and \
                t(v) is t and not v.__flags__ & 512 and v.__name__ == "OSError":
            clean[k] = v
        else:
            replaced.append(k)
    assert not replaced, (f"Grading stopped: a cell replaced Python's builtin "
                          f"{', '.join('`' + k + '`' for k in replaced[:3])}, which the checks rely on.")
    ns = {"__builtins__": clean, "__name__": "helpers.grading", "__file__": __file__}
    with clean["open"](__file__, encoding="utf-8") as file:
        source = file.read()
    clean["exec"](clean["compile"](source, __file__, "exec"), ns)
    return ns["_grade"](exercise_id, namespace, sys)


# ---------------------------------------------------------------------------
# From here on, the file runs with genuine builtins only (the second run, from
# `grade`): ordinary Python.

def _grade(exercise_id, namespace, sys):
    """Run ``exercise_id``'s verifier, from fresh copies of the helpers, with graded=True."""
    __tracebackhide__ = True
    if sys.flags.optimize:
        raise RuntimeError("Grading needs assert statements: run the kernel without -O.")
    folder = __file__[:max(__file__.rfind("/"), __file__.rfind("\\"))]
    load = _fresh_loader(folder, sys)
    load("helpers.checks")._QUIET = True  # the visible check above already printed its ✅ lines
    load("helpers.exercises").run(exercise_id, namespace, graded=True)


def _fresh_loader(folder, sys):
    """``load(name)``: a fresh copy of helpers' module ``name``, run from its file.

    The copies import each other through ``fresh_import`` (their ``__import__``),
    so ``from helpers import checks`` in a fresh chapter module gets the fresh
    ``checks``; every other import goes to Python's own ``__import__``.
    """
    ModuleType = type(sys)
    real_import = __import__
    builtins = dict(__builtins__ if isinstance(__builtins__, dict) else vars(__builtins__))
    modules, initialised = {}, set()

    def source_of(name):
        """(path, is_package, source) of a helpers module's file, or None."""
        base = "/".join([folder, *name.split(".")[1:]])
        for path, package in ((base + "/__init__.py", True), (base + ".py", False)):
            try:
                with open(path, encoding="utf-8") as file:
                    return path, package, file.read()
            except OSError:
                continue
        return None

    def run(name):
        path, _, source = source_of(name)
        exec(compile(source, path, "exec"), modules[name].__dict__)

    def load(name):
        if name in modules:
            return modules[name]
        parent, _, last = name.rpartition(".")
        if parent:
            load(parent)
        found = source_of(name)
        if found is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        path, package, _ = found
        module = modules[name] = ModuleType(name)
        module.__file__, module.__builtins__ = path, builtins
        module.__package__ = name if package else parent
        if package:
            module.__path__ = [path[:path.rfind("/")]]
        if parent:
            setattr(modules[parent], last, module)
        if name != "helpers":  # the top package's __init__ imports the drawing tools:
            run(name)          # run it only when a name it defines is asked for
        return module

    def whole_helpers():
        load("helpers")
        if "helpers" not in initialised:
            initialised.add("helpers")
            run("helpers")

    def fresh_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level:
            package = (globals or {}).get("__package__") or ""
            base = package.rsplit(".", level - 1)[0] if level > 1 else package
            name = f"{base}.{name}" if name else base
        if name != "helpers" and not name.startswith("helpers."):
            return real_import(name, globals, locals, fromlist, 0)
        module = load(name)
        if not fromlist:
            if name == "helpers":
                whole_helpers()
            return modules["helpers"]
        for item in fromlist:
            if item == "*" or hasattr(module, item):
                continue
            if source_of(f"{name}.{item}") is not None:
                load(f"{name}.{item}")
            elif name == "helpers":
                whole_helpers()
        return module

    builtins["__import__"] = fresh_import
    return load
