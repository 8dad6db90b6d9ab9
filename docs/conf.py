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
html_theme = "alabaster"
nitpicky = False
