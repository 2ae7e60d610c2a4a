"""The shape of the code: modules import each other in one direction only, and the model, its losses, the
evaluation and the figures are written against Keras 3 alone (no TensorFlow), so they serve every backend."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = sorted(name[:-3] for name in os.listdir(ROOT) if name.endswith(".py"))
BACKEND_NEUTRAL = ("model", "losses", "evaluate", "figures", "plots", "checkpoints", "data", "cli", "stopping",
                   "explorer")

pytestmark = pytest.mark.backend_independent


def imports(module):
    """Every module name imported anywhere in module's source (top level or inside functions)."""
    tree = ast.parse(open(os.path.join(ROOT, module + ".py")).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_project_modules_import_each_other_without_cycles():
    graph = {m: imports(m) & set(MODULES) for m in MODULES}
    visiting, done = set(), set()

    def visit(module, path):
        assert module not in visiting, "import cycle: " + " -> ".join(path + [module])
        if module in done:
            return
        visiting.add(module)
        for other in sorted(graph[module]):
            visit(other, path + [module])
        visiting.discard(module)
        done.add(module)

    for module in MODULES:
        visit(module, [])


def test_model_losses_evaluation_and_figures_never_import_tensorflow():
    for module in BACKEND_NEUTRAL:
        assert "tensorflow" not in imports(module), module
    # TensorFlow's own engine lives in one module whose name says so.
    assert "tensorflow" in imports("tf_backend")
