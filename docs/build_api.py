"""Build the API reference (``make docs``): pdoc over the public API into build/docs/.

Fails (exit 1) on any warning pdoc raises: a name in ``__all__`` that does not resolve, a
docstring it cannot parse, an annotation it cannot evaluate.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pdoc
import pdoc.render

import ckptmigrate

# The documented modules: the package root (everything in ckptmigrate.__all__) and the
# HTML report the README points Python users to.
MODULES = ("ckptmigrate", "ckptmigrate.html_report")


def main(output: Path, modules: tuple[str, ...] = MODULES) -> int:
    # The root re-exports lazily; pdoc reads a module's __dict__, so resolve them first.
    for name in ckptmigrate.__all__:
        getattr(ckptmigrate, name)
    pdoc.render.configure(
        docformat="google",
        footer_text=f"ckptmigrate {ckptmigrate.__version__}",
        show_source=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pdoc.pdoc(*modules, output_directory=output)
    print(f"API reference: {output / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build/docs")))
