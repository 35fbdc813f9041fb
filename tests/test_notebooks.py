"""The notebooks in colabs/ run top to bottom on a CPU (nbclient, kernel `python3`, in a temporary
directory), produce their figures and tables, and are committed without outputs. The quickstart's
printed scores must rank the shipped learned sampler above DPM-Solver++(2M) at K = 5."""
import json
import pathlib

import pytest

from conftest import require

COLABS = pathlib.Path(__file__).resolve().parent.parent / "colabs"
NOTEBOOKS = sorted(path.name for path in COLABS.glob("*.ipynb"))
EXPECTED = {"autodiffusion_walkthrough.ipynb", "ddss_walkthrough.ipynb", "quickstart.ipynb"}
FID_LINE = "evaluation-space FID:"


def _outputs(nb, output_type=None):
    for cell in nb.cells:
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                if output_type is None or out.get("output_type") == output_type:
                    yield out


def _stdout(nb) -> str:
    return "".join(out.get("text", "") for out in _outputs(nb, "stream") if out.get("name") == "stdout")


def _check_quickstart(nb):
    lines = [line for line in _stdout(nb).splitlines() if line.startswith(FID_LINE)]
    assert len(lines) == 1, f"the quickstart prints one '{FID_LINE} {{...}}' line, got {lines}"
    fid = json.loads(lines[0][len(FID_LINE):])
    assert set(fid) == {"ddim-quadratic", "dpm-solver++(2m)-logsnr", "dpm-solver++(2m)-quadratic",
                        "ggdm+pred+time-teacher"}
    learned = fid.pop("ggdm+pred+time-teacher")
    # The learned K = 5 sampler beats every training-free row on the same held-out noise, the time-quadratic
    # DPM-Solver++(2M) it started from included.
    assert learned < min(fid.values()), fid
    tables = [out["data"]["text/markdown"] for out in _outputs(nb, "display_data") if "text/markdown" in out["data"]]
    assert any("| ggdm+pred+time-teacher | 5 |" in t for t in tables)


def _check_ddss(nb):
    stdout = _stdout(nb)
    assert "refused updates: 0" in stdout
    assert "reloaded sampler vs the trained one: max |Δx₀| = 0.0e+00" in stdout


def _check_autodiffusion(nb):
    stdout = _stdout(nb)
    assert "reloaded winner vs the run's scored samples" in stdout
    assert "searched, pruned by hand" in stdout


CHECKS = {"quickstart.ipynb": _check_quickstart, "ddss_walkthrough.ipynb": _check_ddss,
          "autodiffusion_walkthrough.ipynb": _check_autodiffusion}


def test_the_colabs_are_the_three_walkthroughs_committed_without_outputs():
    nbformat = require("nbformat")
    assert set(NOTEBOOKS) == EXPECTED
    for name in NOTEBOOKS:
        nb = nbformat.read(COLABS / name, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", name
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{name}: clear the outputs"
        assert "DDSS_SOURCE" in nb.cells[1].source, f"{name}: the second cell installs ddss when it is missing"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_notebook_runs_and_shows_its_results(name, tmp_path):
    nbformat = require("nbformat")
    nbclient = require("nbclient")
    require("ipykernel")
    nb = nbformat.read(COLABS / name, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    errors = list(_outputs(nb, "error"))
    assert not errors, errors
    images = [out for out in _outputs(nb) if "image/png" in out.get("data", {})]
    assert len(images) >= 2, f"{name} shows {len(images)} figures"
    CHECKS[name](nb)
