"""The Python examples of the plugin guide (docs/plugins.md) run as they are written."""

import re
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"


def test_the_guides_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert blocks, "docs/plugins.md has no Python example"
    for block in blocks:
        exec(compile(block, str(GUIDE), "exec"), {"__name__": "guide_example"})


def test_the_packaged_wit_is_the_sdks():
    packaged = Path(__file__).resolve().parents[1] / "sluice_plugin" / "wit" / "plugin.wit"
    assert packaged.read_bytes() == (GUIDE.parents[1] / "sdk" / "wit" / "plugin.wit").read_bytes()
