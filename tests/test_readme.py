"""The README's Python snippet runs as written, so the documented API cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    """The fenced ```python blocks of a Markdown text."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_readme_library_snippet_runs(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("GZONE_DATA_DIR", str(data_dir))
    blocks = python_blocks(README.read_text())
    assert len(blocks) == 1, "the README has one Python snippet; update this test with it"
    # as written, on 100 images instead of the snippet's 1000 (the API is what is checked)
    assert 'n=1000)' in blocks[0], "the snippet loads n=1000 images; update this test with it"
    snippet = blocks[0].replace('n=1000)', 'n=100)')
    namespace: dict = {}
    exec(compile(snippet, str(README), "exec"), namespace)  # noqa: S102 - our own README
    result, top = namespace["result"], namespace["top"]
    assert result.hessian.shape == result.gterm.shape == (50, 50)
    np.testing.assert_allclose(result.hessian, result.gterm + result.hterm, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(top.eigenvalues)) and top.eigenvalues.shape == (3,)
    assert len(capsys.readouterr().out.splitlines()) == 3  # one line per alpha
