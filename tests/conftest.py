"""Shared fixtures: seeded generators, devices, and the dashboard served on localhost for the browser tests."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "explorer.py"
SERVE_TIMEOUT_S = 180
"""The app imports torch and holoviews before its first page answers (the session's simulation runs after it)."""


@pytest.fixture
def seed() -> int:
    """The seed every seeded test starts from."""
    return 0


@pytest.fixture
def generator(seed):
    """A seeded CPU generator: every random test draws from it, never from a global RNG."""
    return torch.Generator().manual_seed(1234 + seed)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    log = open(log_path, "wb")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", str(APP), "--address", "127.0.0.1", "--port", str(port),
         "--allow-websocket-origin", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
    )
    url, deadline = f"http://127.0.0.1:{port}/{APP.stem}", time.monotonic() + SERVE_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(log_path.read_text())
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(log_path.read_text())
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        print(log_path.read_text()[-5000:])


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    exe = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium")
    if not exe:
        pytest.skip("apt-get install chromium")
    return {**browser_type_launch_args, "executable_path": exe}
