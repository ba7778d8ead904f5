"""The README's Python snippets run as written, so the documented API cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    """The fenced ```python blocks of a Markdown text."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def readme_block(marker: str) -> str:
    """The README's one Python block containing ``marker``."""
    blocks = python_blocks(README.read_text())
    assert len(blocks) == 2, "the README has two Python snippets; update these tests with them"
    (found,) = [b for b in blocks if marker in b]
    return found


def test_readme_library_snippet_runs(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("GZONE_DATA_DIR", str(data_dir))
    blocks = [readme_block("curvature.projected")]
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


def test_readme_your_own_model_snippet_runs(data_dir, monkeypatch, tmp_path, capsys):
    """The three adapters and gzone.diagnose as written, on 16 images with small settings."""
    monkeypatch.setenv("GZONE_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    code = readme_block("gzone.diagnose")
    small = "temperatures=[0.1, 10], dim=3, lanczos_iters=4, probes=2, per_layer=False)"
    # one diagnosis (nnx) in full; the other two models are built and evaluated (each diagnosis
    # compiles its own programs: the engines are tested in tests/test_adapters.py)
    loop = "for model in (linen_model, nnx_model, function_model):"
    for old, new in (("n=1000)", "n=16)"), ("temperatures=[0.1, 10])", small),
                     (loop, "for model in (nnx_model,):")):
        assert old in code, f"the snippet has {old!r}; update this test with it"
        code = code.replace(old, new)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    out = capsys.readouterr().out
    assert out.count("Goldilocks zone") == 1 and "MLP" in out
    for name in ("linen_model", "function_model"):
        model = namespace[name].bind(namespace["ds"].x)
        assert model.check(namespace["ds"].x, namespace["ds"].y) == 10
    assert (tmp_path / "diagnosis.png").stat().st_size > 0
    assert len((tmp_path / "diagnosis.jsonl").read_text().splitlines()) == 12  # 3 T x (3 terms + 1)
    import matplotlib.pyplot as plt

    plt.close("all")
