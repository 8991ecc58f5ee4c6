"""mona: select task-specific instruction-tuning data by the monosemantic (SAE) features of a language model.

    import mona
    picked = mona.select("pool.jsonl", target_rows, budget=100)           # one target
    selector = mona.Selector(method="mona").fit(pool_rows)                 # many targets over one pool
    for target in targets:
        selector.select(target, ratio=0.05).write("picked.jsonl")
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Selection", "Selector", "__version__", "select"]


def __getattr__(name: str) -> Any:
    # imported on first use: `import mona` (and the command line, which imports this package) stays fast, and
    # loads torch only when a selection is made
    if name in ("Selection", "Selector", "select"):
        from mona import api

        return getattr(api, name)
    raise AttributeError(f"module 'mona' has no attribute {name!r}")
