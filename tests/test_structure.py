"""The shape of the code: what a user runs or a learner opens at the top level, the machinery in one package,
imports in one direction (scripts -> package -> model and losses), no cycles, short functions, and the model,
its losses, the evaluation and the figures written against Keras 3 alone (no TensorFlow), so they serve every
backend."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "mnist_vae"
SCRIPTS = {"train", "evaluate", "compare", "export"}  # what a user runs
TOOLS = {"bench", "bench_references", "make_docs", "results_page", "results_vampprior"}  # tools/: measuring, the docs
LONGEST_TOOL = 500  # lines: a tool split by job
CORE = {"model", "losses"}  # what a learner reads first: the model and its loss
TOP_LEVEL = SCRIPTS | CORE
PACKAGE_MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, PACKAGE))
                         if name.endswith(".py") and name != "__init__.py")
TENSORFLOW_ONLY = {"tf_engine", "tensorboard"}  # TensorFlow's engine and its log writer, named for it
LONGEST_FUNCTION = 50  # lines, anywhere outside the tests

pytestmark = pytest.mark.backend_independent


def path_of(module):
    if module in TOOLS:
        return os.path.join(ROOT, "tools", module + ".py")
    return os.path.join(ROOT, module + ".py") if module in TOP_LEVEL else os.path.join(ROOT, PACKAGE, module + ".py")


def imports(module):
    """Every project module imported anywhere in module's source (top level or inside functions)."""
    tree = ast.parse(open(path_of(module)).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                names.add(parts[1] if parts[0] == PACKAGE and len(parts) > 1 else parts[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts == [PACKAGE]:
                names.update(alias.name for alias in node.names)
            else:
                names.add(parts[1] if parts[0] == PACKAGE else parts[0])
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{module}: relative import; the project imports {PACKAGE}.module by name")
    return names


def test_the_top_level_holds_what_users_run_and_learners_open():
    tops = {name[:-3] for name in os.listdir(ROOT) if name.endswith(".py")}
    assert tops == TOP_LEVEL


def test_imports_run_one_way_scripts_then_package_then_model_and_losses():
    project = TOP_LEVEL | set(PACKAGE_MODULES)
    for module in CORE:
        assert imports(module) & project <= {"losses"}, module  # model.py imports losses.py, and nothing else
    for module in PACKAGE_MODULES:
        assert not imports(module) & (SCRIPTS | TOOLS), module
    for module in SCRIPTS:
        assert not imports(module) & (SCRIPTS - {module}), module


def test_package_modules_import_each_other_without_cycles():
    graph = {m: imports(m) & set(PACKAGE_MODULES) for m in PACKAGE_MODULES}
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

    for module in PACKAGE_MODULES:
        visit(module, [])


def test_no_function_outside_the_tests_is_long():
    """The package, the scripts, model.py, losses.py and the tools (templates are files of their own)."""
    paths = [path_of(m) for m in sorted(TOP_LEVEL | set(PACKAGE_MODULES) | TOOLS)]
    for path in paths:
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= LONGEST_FUNCTION, f"{os.path.relpath(path, ROOT)}: {node.name}: {length} lines"


def test_only_tensorflows_own_modules_import_tensorflow():
    for module in sorted(CORE | {"evaluate", "compare"} | set(PACKAGE_MODULES) - TENSORFLOW_ONLY):
        assert "tensorflow" not in imports(module), module
    for module in TENSORFLOW_ONLY:
        assert "tensorflow" in imports(module), module


def test_the_flags_choices_are_the_models_own():
    """settings.py runs before Keras may start, so it cannot import model.py: the two lists must agree."""
    import losses
    import model
    from mnist_vae import settings

    assert settings.BY_NAME["arch"].choices == model.ARCHITECTURES
    assert settings.BY_NAME["activation"].choices == model.ACTIVATIONS
    assert settings.BY_NAME["objective"].choices == model.OBJECTIVES
    assert settings.BY_NAME["likelihood"].choices == losses.LIKELIHOODS


# The import rule (CONTRIBUTING.md): the backend is chosen before Keras is imported, and bad input is refused
# before any framework starts, so these load without Keras or any backend. The rest may import Keras at the top.
NEEDS_KERAS = {"callbacks", "checkpoints", "dreg", "figures", "outputs", "tensorboard", "two_layer", "vampprior"}
KERAS_FREE = sorted(SCRIPTS) + ["bench"] + [f"{PACKAGE}.{m}" for m in PACKAGE_MODULES if m not in NEEDS_KERAS]


def test_the_modules_that_run_before_the_backend_is_chosen_import_no_framework():
    import subprocess
    import sys

    check = ("import importlib, sys\n"
             "sys.path.insert(0, 'tools')\n"
             f"for name in {KERAS_FREE!r}:\n"
             "    importlib.import_module(name)\n"
             "    loaded = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]\n"
             "    assert not loaded, f'importing {name} loads {loaded}'\n")
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1]


# Where a package module's tests live when not in tests/unit/test_<module>.py.
TESTED_ELSEWHERE = {"distribute": "tests/backends/test_distribute.py"}  # several devices and processes


def test_the_tools_live_apart_each_split_by_job():
    assert {name[:-3] for name in os.listdir(os.path.join(ROOT, "tools")) if name.endswith(".py")} == TOOLS
    for module in TOOLS:
        lines = sum(1 for _ in open(path_of(module), encoding="utf-8"))
        assert lines <= LONGEST_TOOL, (module, lines)


def test_contributings_module_table_names_every_module_once():
    """CONTRIBUTING.md's layout table: a row for every script, model.py, losses.py and every package module."""
    import re

    text = open(os.path.join(ROOT, "CONTRIBUTING.md"), encoding="utf-8").read()
    table = text[text.index("| file | its one job |"):text.index("## The import rule")]
    first_cells = [row.split("|")[1] for row in table.splitlines()[2:] if row.startswith("|")]
    named = [name for cell in first_cells for name in re.findall(r"`(?:mnist_vae/|tools/)?(\w+)\.py`", cell)]
    assert sorted(set(named)) == sorted(named), "a module named in two rows"
    modules = TOP_LEVEL | set(PACKAGE_MODULES) | TOOLS
    assert set(named) == modules, set(named) ^ modules


def test_every_module_has_its_tests_beside_its_name():
    """tests/unit/test_<module>.py for each package module, tests/math/test_<name>.py for model.py and losses.py,
    tests/programs/test_<name>.py for each program the user runs (CONTRIBUTING.md, "The tests")."""
    expected = {m: TESTED_ELSEWHERE.get(m, f"tests/unit/test_{m}.py") for m in PACKAGE_MODULES}
    expected.update({m: f"tests/math/test_{m}.py" for m in CORE})
    expected.update({m: f"tests/programs/test_{m}.py" for m in SCRIPTS | {"bench"}})
    missing = sorted(path for path in expected.values() if not os.path.isfile(os.path.join(ROOT, path)))
    assert not missing
    unit = {name for name in os.listdir(os.path.join(ROOT, "tests", "unit")) if name.endswith(".py")}
    assert unit <= {f"test_{m}.py" for m in PACKAGE_MODULES}  # no file named after anything but a module
