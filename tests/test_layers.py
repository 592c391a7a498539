"""The layering rule: studio/ui reaches the rest of the studio only through the façade (studio.studio and the
typed values it re-exports), studio.errors and studio.config, so a change below the façade touches no tab."""

from __future__ import annotations

import ast
from pathlib import Path

import studio.ui

ALLOWED = {"studio.studio", "studio.errors", "studio.config"}
UI = Path(studio.ui.__file__).parent


def studio_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) for every import of a studio module in this source, at any depth (inside functions too)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "studio"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "studio":  # `from studio import search`: each name is a module
                found += [(node.lineno, f"studio.{a.name}") for a in node.names]
            elif node.module.startswith("studio."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:  # relative: only within studio.ui itself
            found.append((node.lineno, "studio.ui" + ("." + node.module if node.module else "")
                          if node.level == 1 else "studio.<outside ui>"))
    return found


def allowed(module: str) -> bool:
    return module in ALLOWED or module == "studio.ui" or module.startswith("studio.ui.")


def test_ui_imports_only_the_facade() -> None:
    files = sorted(UI.glob("*.py"))
    assert len(files) > 5, "studio/ui was not found"
    wrong = [f"{f.name}:{line} imports {mod}" for f in files for line, mod in studio_imports(f.read_text())
             if not allowed(mod)]
    assert not wrong, "studio/ui may import only studio.studio, studio.errors, studio.config and studio.ui.*:\n" + \
        "\n".join(wrong)


def test_the_rule_sees_every_form_of_import() -> None:
    source = ("import studio.search.store\nfrom studio.images import open_image\nfrom studio import tokens\n"
              "def f():\n    from studio.search.searcher import to_hit\nfrom studio.studio import Studio\n"
              "from studio.ui.text import inert\nfrom . import views\n")
    assert [m for _, m in studio_imports(source) if not allowed(m)] == [
        "studio.search.store", "studio.images", "studio.tokens", "studio.search.searcher"]
