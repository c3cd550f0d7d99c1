"""The shipped model folder carries its code as remote code: every `space/model/*.py` is a byte-for-byte copy
of its source in this repository (`save_pretrained` copies them; edits to the sources must be copied too)."""

from pathlib import Path
from conftest import ROOT as CONFTEST_ROOT

ROOT = Path(CONFTEST_ROOT)  # the repository
SHIPPED = ROOT / "space" / "model"
SOURCES = {
    "modeling_transformer.py": "modeling/modeling_transformer.py",
    "fast_paths.py": "modeling/fast_paths.py",
    "configuration_transformer.py": "configuration/configuration_transformer.py",
    "pipeline_translation.py": "modeling/pipeline_translation.py",
}
REFRESH = "cp " + " ".join(SOURCES.values()) + " space/model/"


def test_every_shipped_python_file_has_a_source():
    shipped = sorted(path.name for path in SHIPPED.glob("*.py"))
    assert shipped == sorted(SOURCES), f"space/model/ holds {shipped}; expected exactly {sorted(SOURCES)}"


def test_shipped_code_equals_its_source():
    stale = [name for name, source in SOURCES.items() if (SHIPPED / name).read_bytes() != (ROOT / source).read_bytes()]
    assert not stale, (
        f"space/model/{', space/model/'.join(stale)} differ from their sources; refresh the folder with:\n    {REFRESH}"
    )
