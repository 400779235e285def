#!/usr/bin/env python3
"""Prints the module-level dependency cycles among the top-level modules of a crate's `src/`.

A top-level module is a file `src/NAME.rs` or a folder `src/NAME/`. It depends on another when
its code names `crate::OTHER` (in a `use` or a path); `super::` inside a folder stays inside the
module. Comments are skipped, and so are test files (`tests.rs`, `*_tests.rs`): a test may use
another module's test helpers (the fake engine) without the modules depending on each other.
Exits 1 when a cycle exists, so CI can run it.

Usage: scripts/module_cycles.py [SRC_DIR ...]   (default: src)
"""

import re
import sys
from pathlib import Path

PATH = re.compile(r"\bcrate::(?:\{([^}]*)\}|([a-z_][a-z0-9_]*))")
GROUP_ITEM = re.compile(r"(?:^|,)\s*([a-z_][a-z0-9_]*)")
LINE_COMMENT = re.compile(r"//.*")
BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)


def module_of(src: Path, file: Path) -> str | None:
    rel = file.relative_to(src)
    if len(rel.parts) == 1:
        return None if rel.stem in ("lib", "main") else rel.stem
    return rel.parts[0]


def edges(src: Path) -> dict[str, set[str]]:
    modules = {p.stem for p in src.glob("*.rs")} | {p.name for p in src.iterdir() if p.is_dir()}
    modules -= {"lib", "main"}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for file in src.rglob("*.rs"):
        me = module_of(src, file)
        if me is None or file.name == "tests.rs" or file.name.endswith("_tests.rs"):
            continue
        text = LINE_COMMENT.sub("", BLOCK_COMMENT.sub("", file.read_text()))
        for group, name in PATH.findall(text):
            names = GROUP_ITEM.findall(group) if group else [name]
            graph[me].update(n for n in names if n in modules and n != me)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def main() -> int:
    roots = [Path(a) for a in sys.argv[1:]] or [Path("src")]
    status = 0
    for src in roots:
        graph = edges(src)
        for component in cycles(graph):
            status = 1
            pairs = [f"{a} -> {b}" for a in component for b in sorted(graph[a]) if b in component]
            print(f"{src}: cycle among {', '.join(component)}: {'; '.join(pairs)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
