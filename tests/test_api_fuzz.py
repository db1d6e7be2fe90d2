"""Schemathesis holds a live node to its OpenAPI document.

Property-based over every route: positive and negative requests, status codes,
content types, answer schemas, auth that is not ignored, 405s with Allow. The
node runs here on loopback with Twilio configured (so its webhook is live), an
operator account (so the admin routes are reached past 403), and the run's
widening of checks is in tests/schemathesis.toml, each with its reason.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from server.settings import AuthSettings
from tests.conftest import ARTIFACTS, ServerFactory, base_settings, provider_settings
from tests.providers import ProviderRecorder
from tests.services import API_KEY, JWT_SECRET

HERE = Path(__file__).resolve().parent
OPERATOR = "fuzz-operator@example.org"
# Fixed so a failure reproduces; LIFELINE_FUZZ_SEED explores other inputs.
SEED = os.environ.get("LIFELINE_FUZZ_SEED", "20261207")
EXAMPLES = os.environ.get("LIFELINE_FUZZ_EXAMPLES", "20")


@pytest.mark.timeout(600)
async def test_schemathesis_finds_no_failure_on_any_route(
    make_server: ServerFactory, db: str, providers: ProviderRecorder, tmp_path: Path
) -> None:
    settings = base_settings(
        db,
        auth=AuthSettings(
            jwt_secret=JWT_SECRET,
            argon2_time_cost=1,
            argon2_memory_kib=1024,
            admin_emails=(OPERATOR,),
        ),
    )
    server = await make_server(provider_settings(replace(settings), providers))
    ARTIFACTS.mkdir(exist_ok=True)
    report = ARTIFACTS / "schemathesis.txt"
    st = Path(sys.executable).with_name("st")
    process = await asyncio.create_subprocess_exec(
        str(st),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{server.url}/api/v1/openapi.json",
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--generation-with-security-parameters",
        "false",
        "--request-timeout",
        "20",
        "--no-color",
        cwd=tmp_path,  # its replay files stay out of the checkout
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            **os.environ,
            "PYTHONPATH": str(HERE.parent),
            "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
            "LIFELINE_FUZZ_URL": server.url,
            "LIFELINE_FUZZ_API_KEY": API_KEY,
            "LIFELINE_FUZZ_OPERATOR_EMAIL": OPERATOR,
        },
    )
    # The node runs in this event loop: wait without blocking it.
    output, _ = await asyncio.wait_for(process.communicate(), timeout=540)
    text = output.decode(errors="replace")
    report.write_text(text)
    tail = "\n".join(text.splitlines()[-40:])
    assert process.returncode == 0, f"schemathesis failed (whole report in {report}):\n{tail}"
    # Every operation of the document was exercised, none skipped.
    selected = re.search(r"Selected: (\d+)/(\d+)", text)
    tested = re.search(r"Tested: (\d+)", text)
    assert selected and tested, tail
    assert selected[1] == selected[2] == tested[1], tail
