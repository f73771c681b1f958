"""Programs built on the core, a layer above it: they read recorded traces or drive an RLM.

* :mod:`recursor.apps.replay`: re-run a trace on its recorded replies (``recursor replay``);
* :mod:`recursor.apps.sft`: chat records for fine-tuning a root controller (``export-sft``);
* :mod:`recursor.apps.viewer`: one self-contained HTML page for a trace (``recursor view``).

They import the core (``recursor.rlm``, ``recursor.trace``, ...); nothing in the core imports
them (``tests/test_imports.py`` checks it), so the core never depends on its own users.
"""
