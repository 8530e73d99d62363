"""The code a case's workflows run outside the sandbox's checks stays deterministic.

Since issue 14 the workflows run for every loan (the case, its plan, placement and legal
referral) are defined with ``sandboxed=False``: the sandbox imported their module again for every
case (about 10 ms of CPU a case opened, and most of a cached case's memory) while checking
little, because the code they run was already passed through. This test is their guard.

``workflows/case_shell.py`` and the case core come through ``imports_passed_through``: the sandbox
no longer stops them reading the clock, drawing random numbers, starting threads or doing I/O.
This test reads their source and fails on any such call, so a change that would make a replay
diverge is caught here rather than in a running history.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Modules run inside a case's workflow task (the shell, the core, the rules it calls).
WORKFLOW_MODULES = sorted(
    [
        *(ROOT / "collections_domain" / "case").glob("*.py"),
        ROOT / "collections_domain" / "rules" / "calendar.py",
        ROOT / "collections_domain" / "rules" / "ladder.py",
        ROOT / "collections_domain" / "rules" / "compliance.py",
        ROOT / "collections_domain" / "rules" / "plans.py",
        ROOT / "workflows" / "case_shell.py",
        ROOT / "workflows" / "loan_collection.py",
        ROOT / "workflows" / "hand_offs.py",
        ROOT / "workflows" / "repayment_plan.py",
        ROOT / "workflows" / "legacy" / "loan_collection_v3.py",
    ]
)

#: Modules whose import alone means I/O, threads, randomness or wall-clock time.
FORBIDDEN_MODULES = {
    "random", "secrets", "uuid", "time", "threading", "multiprocessing", "subprocess", "socket",
    "asyncio.subprocess", "os", "sqlalchemy", "sqlmodel", "httpx", "requests", "concurrent",
}
#: Calls that read the wall clock or the environment, or do I/O.
FORBIDDEN_CALLS = {"now", "utcnow", "today", "open", "getenv", "urandom", "perf_counter", "monotonic"}


def _problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            names = []
        for name in names:
            if name in FORBIDDEN_MODULES or name.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {name}")
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            if called in FORBIDDEN_CALLS and owner != "workflow":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: calls {owner + '.' if owner else ''}{called}()")
    return found


@pytest.mark.parametrize("path", WORKFLOW_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_workflow_code_reads_no_clock_randomness_or_io(path):
    assert path.exists()
    assert _problems(path) == []


def test_the_check_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import random\nfrom datetime import datetime\nimport uuid\n"
        "def f():\n    open('x')\n    return datetime.now(), workflow.now()\n",
        encoding="utf-8",
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        problems = _problems(bad)
    finally:
        ROOT = saved
    assert problems == ["bad.py:1: imports random", "bad.py:3: imports uuid", "bad.py:5: calls open()",
                        "bad.py:6: calls datetime.now()"]
