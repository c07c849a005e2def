"""Install hints are said one way everywhere: in error messages (finsent_cli.extras) and in the README."""

from __future__ import annotations

import re

from finsent_cli.core.models.hub import OFFLINE_MODELS
from finsent_cli.extras import install_hint
from tests.helpers import REPO

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


def test_every_hinted_extra_exists_and_the_readme_says_it_the_same_way() -> None:
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    hinted = set()
    for path in (REPO / "finsent_cli").rglob("*.py"):
        hinted |= set(re.findall(r"install_hint\(\s*[\"'](\w+)[\"']\s*\)", path.read_text(encoding="utf-8")))
    hinted |= {model.extra for model in OFFLINE_MODELS.values()}  # core/models/hub.py: install_hint(self.extra)
    assert {"mpnet", "onnx", "serve", "gpu"} <= hinted and hinted <= extras, (hinted, extras)
    readme = (REPO / "README.md").read_text(encoding="utf-8").replace("\n", " ")
    for extra in ("mpnet", "serve", "onnx"):
        assert install_hint(extra).split(" (")[0] in readme, extra


def test_no_message_names_a_finsent_package_on_pypi() -> None:
    """finsent installs from its checkout; ``pip install 'finsent[x]'`` would fetch some other project."""
    found = [
        f"{path.relative_to(REPO)}:{n}"
        for path in (REPO / "finsent_cli").rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "pip install 'finsent[" in line and "would look for" not in line
    ]
    assert not found, found
