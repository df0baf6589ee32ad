"""The package's import graph: each wing imports only the wings below it, toward the core.

    core       sagevit.errors, sagevit.contract    names and errors everyone shares
    platform   sagevit.platform.*                  the machine, the process, the file system
    model      sagevit.model.*                     the ViT, its weights        (beside data)
    data       sagevit.data.*                      channels, decoding, pipeline (beside model)
    training   sagevit.training.*                  the loop, recipe, checkpoints, export
    top        sagevit.config, flags, presets: the hyperparameters; sagevit.job: the job's
               steps; sagevit.entry, toolkit: its ways in

Only the job, the CLI entry point and config's own helper (flags) read the hyperparameters:
no wing imports `sagevit.config`, so library code takes the fields it uses as arguments.
"""

import ast
from pathlib import Path

import sagevit

SRC = Path(sagevit.__file__).parent
RANK = {"core": 0, "platform": 1, "model": 2, "data": 2, "training": 3, "top": 4}
CORE = {"sagevit.errors", "sagevit.contract", "sagevit"}
WINGS = ("platform", "model", "data", "training")


def wing(module: str) -> str:
    """The wing a dotted module name belongs to."""
    if module in CORE:
        return "core"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in WINGS else "top"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path) -> set[str]:
    """The sagevit modules `path` imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sagevit.")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sagevit"):
            if node.module == "sagevit" or node.module in {f"sagevit.{w}" for w in WINGS}:
                found |= {f"{node.module}.{a.name}" for a in node.names}  # from P import module
            else:
                found.add(node.module)
    return found


GRAPH = {module_name(p): imports(p) for p in sorted(SRC.rglob("*.py"))}


def test_every_module_belongs_to_a_wing_or_the_top():
    top = sorted(m for m in GRAPH if wing(m) == "top")
    assert top == [
        "sagevit.config",
        "sagevit.entry",
        "sagevit.flags",
        "sagevit.job",
        "sagevit.presets",
        "sagevit.toolkit",
    ], top


def test_arrows_point_toward_the_core():
    upward = [
        f"{module} ({wing(module)}) imports {name} ({wing(name)})"
        for module, names in GRAPH.items()
        for name in sorted(names)
        if wing(name) != wing(module) and RANK[wing(name)] >= RANK[wing(module)]
    ]
    assert not upward, "imports that point away from the core:\n" + "\n".join(upward)


def test_only_the_top_reads_the_hyperparameters():
    readers = sorted(m for m, names in GRAPH.items() if "sagevit.config" in names)
    assert readers == ["sagevit.entry", "sagevit.flags", "sagevit.job"]
