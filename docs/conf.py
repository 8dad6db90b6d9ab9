"""Sphinx configuration of the pyroseq API reference (``make docs`` builds HTML into ``docs/_build/html``)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "pyroseq"
author = "pyroseq developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.mathjax", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
# Heavy optional imports are not needed to render docstrings.
autodoc_mock_imports = ["mamba_ssm", "numba"]
exclude_patterns = ["_build"]

# The design notes and the benchmark studies are Markdown pages, read with myst-parser (the docs extra). Without
# it the API reference still builds, without those pages.
try:
    import myst_parser  # noqa: F401
except ImportError:
    exclude_patterns += ["*.md"]
    suppress_warnings = ["toc.excluded", "toc.not_readable"]
else:
    extensions.append("myst_parser")
    source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
    myst_enable_extensions = ["dollarmath"]
    myst_heading_anchors = 3
html_theme = "alabaster"
nitpicky = False
