"""The CLI verifies an HTTPS daemon's certificate before it sends the token."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.daemon.conftest import DaemonProcess
from tests.helpers import run_cli


def test_a_self_signed_daemon_is_trusted_only_when_told(
    start_daemon: Any, tmp_path: Path, self_signed: tuple[Path, Path]
) -> None:
    cert, key = self_signed
    config = tmp_path / "tls.toml"
    config.write_text(f'[daemon]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')
    daemon: DaemonProcess = start_daemon("--config", str(config))
    assert daemon.url.startswith("https://")
    where = ("--state-dir", str(daemon.state_dir))

    refused = run_cli("jobs", *where)
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith(
        f"evercron: error: the TLS certificate of the evercron daemon at {daemon.url} is "
        "not trusted ("
    )
    assert "pass --ca-cert FILE" in refused.stderr

    hashed = tmp_path / "certs"  # an OpenSSL CA directory: certificates by subject hash
    hashed.mkdir()
    shutil.copy(cert, hashed / "daemon.pem")
    subprocess.run(["openssl", "rehash", str(hashed)], check=True, capture_output=True)
    for args, env in (
        (("--ca-cert", str(cert)), {}),
        ((), {"EVERCRON_CA_CERT": str(cert)}),
        ((), {"SSL_CERT_FILE": str(cert)}),
        ((), {"SSL_CERT_DIR": str(hashed)}),
    ):
        done = run_cli("jobs", "--json", *where, *args, env=env)
        assert done.returncode == 0, (args, env, done.stderr)
        assert done.stdout.strip() == "[]"


def test_an_unusable_ca_file_is_one_line(tmp_path: Path) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    url = ("--url", "https://127.0.0.1:9", "--token", "t")
    for path, reason in ((tmp_path / "absent.pem", "No such file"), (not_pem, "")):
        done = run_cli("status", *url, "--ca-cert", str(path))
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith(f"evercron: error: --ca-cert {path}: not a readable PEM")
        assert reason in done.stderr and len(done.stderr.splitlines()) == 1
