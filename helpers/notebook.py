"""How errors look in a notebook: one line for the helpers' own errors, short tracebacks for the rest.

- ``OneLineError`` -- a mixin for the helpers' exception classes (``GraphError``,
  ``TraceError``, ``CheckFailed``, ``ReleaseError``): IPython shows such an
  error as its one-line message, like a failing check, instead of a traceback
  through the helpers' code. The message already says what is wrong and what to do.
- ``short_tracebacks()`` -- called once in a chapter's setup cell. Every later
  error in the notebook shows only the frames of code written in the notebook's
  cells and the final message; the frames inside PyTorch, the standard library
  and the helpers are left out. A cell that raises on purpose shows a few lines,
  not 40 to 128. ``%tb`` and ``%debug`` still see the whole traceback.
- ``is_cell(filename)``, ``cell_line(error)`` -- where in the learner's cells an
  error was raised; the checks name that line in their feedback.

Why not ``%xmode Minimal``: it hides the learner's own frames too, so a learner
whose function fails cannot see which of their lines failed.
"""
import linecache
import re
import sys

__all__ = ["OneLineError", "short_tracebacks", "is_cell", "cell_line"]

_RED, _RESET = "\x1b[0;31m", "\x1b[0m"

# IPython names a cell's code '<ipython-input-12-0123abcd>' (terminal IPython, Colab) or,
# in ipykernel, a file in its temporary folder: '/tmp/ipykernel_4242/1234567.py'.
_CELL = re.compile(r"^<ipython-input-\d+-[0-9a-f]+>$|ipykernel_\d+[/\\]\d+\.py$")


class OneLineError:
    """Mixin: IPython shows the exception as one line, ``Name: message``, without a traceback.

    ``_shown_as`` is the label before the message (the class name unless set).
    A message of several lines is joined into one.
    """

    _shown_as = None

    def _render_traceback_(self):  # IPython calls this instead of formatting a traceback
        return [one_line(self, self._shown_as)]


def one_line(error, label=None):
    """``Name: message`` of ``error`` on one line, in IPython's red for the name."""
    message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    label = type(error).__name__ if label is None else label
    if not label:
        return message
    return f"{_RED}{label}{_RESET}{': ' if label.isidentifier() else ' '}{message}"


def is_cell(filename):
    """Is ``filename`` the code of a notebook cell (as IPython names it)?"""
    return bool(_CELL.search(filename or ""))


def _cell_name(filename):
    """'In[12]' for a cell's code, or None if IPython does not know it."""
    try:
        shell = get_ipython()  # noqa: F821 -- defined in IPython's builtins
        label = shell.compile.format_code_name(filename)
        return label[1] if label else None
    except Exception:  # not in IPython, or an IPython without format_code_name
        match = re.match(r"^<ipython-input-(\d+)-", filename)
        return f"In[{match.group(1)}]" if match else None


def cell_line(error):
    """Where in the notebook's cells ``error`` was raised: the last traceback frame whose
    code is a cell's, as ``"line 3 of In[12]: `return x / 0`"`` -- or None."""
    last, tb = None, error.__traceback__
    while tb is not None:
        if is_cell(tb.tb_frame.f_code.co_filename):
            last = tb
        tb = tb.tb_next
    if last is None:
        return None
    filename, lineno = last.tb_frame.f_code.co_filename, last.tb_lineno
    name = _cell_name(filename)
    where = f"line {lineno} of {name}" if name else f"line {lineno} of your cell"
    text = linecache.getline(filename, lineno).strip()
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{where}: `{text}`" if text else where


# ------------------------------------------------------------ short tracebacks

def _short_traceback(shell, etype, value, tb, tb_offset=None):
    """IPython custom exception handler: the learner's frames and the message."""
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb  # for %debug and %tb
    if hasattr(value, "_render_traceback_"):
        stb = value._render_traceback_()
    else:
        stb = []
        while tb is not None:
            code = tb.tb_frame.f_code
            if is_cell(code.co_filename):
                name = _cell_name(code.co_filename) or "Cell"
                text = linecache.getline(code.co_filename, tb.tb_lineno).rstrip()
                where = f"{name}, line {tb.tb_lineno}"
                if code.co_name != "<module>":
                    where += f", in {code.co_name}"
                stb.append(f"{where}\n----> {text.strip()}" if text else where)
            tb = tb.tb_next
        message = str(value)
        stb.append(f"{_RED}{etype.__name__}{_RESET}: {message}" if message else
                   f"{_RED}{etype.__name__}{_RESET}")
    shell._showtraceback(etype, value, stb)
    return None


def short_tracebacks(on=True):
    """From now on, errors in this notebook show only your cells' lines and the message.

    Call it once in a notebook's setup cell; ``short_tracebacks(False)`` goes back
    to IPython's full tracebacks. Outside IPython it does nothing.
    """
    try:
        shell = get_ipython()  # noqa: F821
    except NameError:
        return
    if shell is None:
        return
    if on:
        shell.set_custom_exc((Exception,), _short_traceback)
    else:
        shell.set_custom_exc((), None)
