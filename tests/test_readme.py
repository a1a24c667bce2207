"""The README's SDK examples run as written, offline, against the OpenAI emulator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"
DOCUMENTED_URL = "ws://127.0.0.1:8765/v1/realtime"


def sdk_examples() -> list[str]:
    section = README.read_text().split("## Python SDK", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_sdk_examples_run(tmp_path: Any, run_emulator_process: Any) -> None:
    url = run_emulator_process("openai")  # on a free port, not the documented 8765
    examples = sdk_examples()
    assert len(examples) == 2
    outputs = []
    for n, code in enumerate(examples):
        assert DOCUMENTED_URL in code
        script = tmp_path / f"example_{n}.py"
        script.write_text(code.replace(DOCUMENTED_URL, url))
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert "[turn complete]" in outputs[0] and "OpenAI emulator" in outputs[0]
    match = re.search(r"Got (\d+) audio chunks, ([\d.]+) s \(24000 Hz\)", outputs[1])
    assert match and int(match.group(1)) > 0 and float(match.group(2)) > 0.5, outputs[1]
