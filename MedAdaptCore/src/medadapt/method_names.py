"""The names of the adaptation methods, importable without torch (the command line checks ``--method`` before
anything heavy is loaded)."""

METHODS = ("lora", "zero-shot", "fill", "linear-probe", "spatial-adapter", "spatial-adapter-ti")
HEAD_METHODS = {"linear-probe": ("linear-probe", False), "spatial-adapter": ("spatial-adapter", False),
                "spatial-adapter-ti": ("spatial-adapter", True)}
"""FSEFT methods -> (head kind, constrained transductive inference); they segment every slice without prompts."""
