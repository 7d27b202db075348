"""The structure issue 31 set up, held: one home per concept (counted over bench/, methods/, zoos/).

`python -m tests.test_structure` prints the counts; the tests hold each at its target.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "zoos")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 600, 80
KIND = re.compile(r"""["'](inr|classifier)["']""")  # the task kinds' names


def _modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text()
            yield path.relative_to(ROOT).as_posix(), source, ast.parse(source)


@functools.cache  # three tests read one count of the tree
def counts() -> dict[str, list[str]]:
    out = {"task-kind comparisons outside zoos/tasks.py": [], f"files over {MAX_FILE_LINES} lines": [],
           f"functions over {MAX_FUNCTION_LINES} lines": [], "imports of private names across files": []}
    keys = list(out)
    for rel, source, tree in _modules():
        if source.count("\n") > MAX_FILE_LINES:
            out[keys[1]].append(f"{rel}: {source.count(chr(10))}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and rel != "zoos/tasks.py":
                if KIND.search(ast.get_source_segment(source, node) or ""):
                    out[keys[0]].append(f"{rel}:{node.lineno}")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    out[keys[2]].append(f"{rel}:{node.name}")
            elif isinstance(node, ast.ImportFrom) and node.module:
                out[keys[3]] += [f"{rel}: {node.module}.{a.name}" for a in node.names
                                 if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def test_no_code_outside_the_task_branches_on_the_task_kind():
    assert not counts()["task-kind comparisons outside zoos/tasks.py"]


def test_no_grab_bag_files_or_functions():
    found = counts()
    assert not found[f"files over {MAX_FILE_LINES} lines"] and not found[f"functions over {MAX_FUNCTION_LINES} lines"]


def test_no_module_imports_another_ones_private_names():
    assert not counts()["imports of private names across files"]


if __name__ == "__main__":
    for name, where in counts().items():
        print(f"{name}: {len(where)}" + "".join(f"\n  {w}" for w in where))
