"""What installing the project puts into site-packages: one unique name (encdec_lens), no generic ones."""

import os
import subprocess
import sys

GENERIC = ("configuration", "modeling", "training")


def test_only_encdec_lens_is_importable_outside_the_repository(tmp_path):
    """From a directory outside the repository (a user's own project), the installed environment offers
    `encdec_lens` and none of the repository's generic package names, which would shadow a user's own."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = (
        "import importlib.util as u, json; "
        f"print(json.dumps({{n: u.find_spec(n) is not None for n in {GENERIC + ('encdec_lens',)!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout
    found = __import__("json").loads(out)
    assert found == {"configuration": False, "modeling": False, "training": False, "encdec_lens": True}, found
