"""Start Python children that import what the parent imports, and nothing from the working
directory.

``python -m module`` puts the working directory first on ``sys.path``: a ``json.py`` or
``numpy.py`` lying there would run inside the child. So children start in isolated mode
(``-I``: no working directory, no ``PYTHON*`` variables, no user site-packages) and then take
the parent's own ``sys.path``, handed over on the command line. The child thus finds
ckptmigrate, TensorFlow and a builder module exactly where the parent found them (an
editable install, a user install, ``PYTHONPATH`` entries the parent resolved, a test
directory), and finds a module in the working directory only if the parent itself had the
working directory on its path (``python -m ckptmigrate`` run there: it imported from it first).

The ``PYTHON*`` variables are dropped on purpose: their effect on the import path reaches the
child through the parent's path, and the rest (``PYTHONSTARTUP``, ``PYTHONINSPECT``,
``PYTHONWARNINGS``, ...) has no business changing a verification. Other variables
(``TF_*``, ``CUDA_*``, credentials) pass through unchanged.
"""

from __future__ import annotations

import sys

# Runs before anything is imported from sys.path: the interpreter's own start-up imports
# come from the standard library, and -I keeps the working directory off the path.
_BOOTSTRAP = (
    "import sys\n"
    "count = int(sys.argv[2])\n"
    "sys.path[:] = sys.argv[3 : 3 + count]\n"
    "sys.argv[:] = [sys.argv[1], *sys.argv[3 + count :]]\n"
    "import runpy\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)


def python_command(module: str, *args: str) -> list[str]:
    """The command line running ``python -m module args`` in an isolated child that imports
    from the parent's ``sys.path`` (without empty entries, which mean the working directory)."""
    path = [p for p in sys.path if p]
    return [sys.executable, "-I", "-c", _BOOTSTRAP, module, str(len(path)), *path, *args]
