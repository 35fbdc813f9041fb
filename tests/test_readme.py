"""The documentation's Python examples run: every ```python block of README.md and docs/*.md.

The blocks of one file run in order, in one shared namespace (a later block may use an earlier
block's names), in a temporary working directory. A failing block fails the test with its file
and line number; tracebacks point at the lines of the Markdown file itself. Blocks are kept cheap
(seconds each). A block that imports a test reference library (torch, diffusers) that is not
installed skips the rest of its file, unless DDSS_REQUIRE_REFERENCES=1 (then it fails).
"""
import os
import pathlib
import traceback

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REFERENCES = ("torch", "diffusers")


def python_blocks(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line number of the first code line, source) of each ```python block, in file order."""
    blocks, body, start = [], None, 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fence = line.strip()
        if body is None:
            if fence == "```python":
                body, start = [], number + 1
        elif fence.startswith("```"):
            blocks.append((start, "\n".join(body) + "\n"))
            body = None
        else:
            body.append(line)
    if body is not None:
        raise ValueError(f"{path.name}: the ```python block at line {start - 1} is never closed.")
    return blocks


def test_blocks_are_found():
    blocks = python_blocks(ROOT / "README.md")
    assert len(blocks) >= 3, "README.md should have Python examples; did the fence syntax change?"
    assert all(source.strip() for _, source in blocks)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_python_blocks_run(path, tmp_path, monkeypatch):
    blocks = python_blocks(path)
    if not blocks:
        pytest.skip(f"{path.name} has no ```python blocks")
    monkeypatch.chdir(tmp_path)
    name = str(path.relative_to(ROOT))
    namespace = {"__name__": f"docs:{name}"}
    for line, source in blocks:
        # Padding with blank lines makes the compiled code's line numbers those of the Markdown file.
        code = compile("\n" * (line - 1) + source, str(path), "exec")
        try:
            exec(code, namespace)
        except Exception as e:  # reported below, outside the handler, without this frame
            if (isinstance(e, ModuleNotFoundError) and e.name in REFERENCES
                    and os.environ.get("DDSS_REQUIRE_REFERENCES") != "1"):
                pytest.skip(f"{name}, block at line {line}: needs {e.name} (a test reference library)")
            error = "".join(traceback.format_exception(type(e), e, e.__traceback__.tb_next))
        else:
            continue
        pytest.fail(f"{name}, block at line {line} failed:\n{error}", pytrace=False)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_links_point_at_files_that_exist(path):
    """Every relative Markdown link of README.md and docs/*.md names a file or folder of the repository."""
    import re

    text = path.read_text(encoding="utf-8")
    links = [target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", text)]
    local = [t for t in links if t and not re.match(r"[a-z]+://", t)]
    missing = [t for t in local if not (path.parent / t).exists()]
    assert not missing, f"{path.name} links to missing files: {missing}"
    assert "DESIGN.md" not in text and "../shared" not in text
