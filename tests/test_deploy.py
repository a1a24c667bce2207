"""The compose stack is valid as written (``docker compose config`` needs no engine), and
refuses to start without the secrets it needs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def compose() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


@pytest.mark.skipif(compose() is None, reason="neither docker compose nor docker-compose here")
def test_the_compose_stack_is_valid_and_needs_its_secrets() -> None:
    command = compose()
    assert command is not None
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    secrets = {"BRIDGE_AUTH_SECRET": "a" * 32, "BRIDGE_TURN_SECRET": "b" * 32}
    ok = subprocess.run(
        [*command, "config"], cwd=ROOT, env={**base, **secrets},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    for service in ("bridge:", "coturn:", "redis:", "prometheus:"):
        assert service in ok.stdout
    assert "use-auth-secret" in ok.stdout and "/metrics" not in ok.stderr
    missing = subprocess.run(
        [*command, "config"], cwd=ROOT, env=base,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert missing.returncode != 0 and "BRIDGE_AUTH_SECRET" in missing.stderr + missing.stdout
