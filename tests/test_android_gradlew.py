"""android_demo/gradlew, the shell Gradle wrapper: it downloads the distribution the properties
name into GRADLE_USER_HOME once, verifies its sha256 when given, and runs its bin/gradle with the
demo as project dir. There is no network here, so a stand-in distribution served from a file://
URL (curl reads those) plays Gradle; the real download is not exercised."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fake_distribution(tmp: Path) -> Path:
    zpath = tmp / "gradle-8.5-bin.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        info = zipfile.ZipInfo("gradle-8.5/bin/gradle")
        info.external_attr = 0o755 << 16
        z.writestr(info, '#!/bin/sh\necho "fake gradle $*"\n')
    return zpath


def demo_copy(tmp: Path, url: str, sha: str | None) -> Path:
    demo = tmp / "demo"
    (demo / "gradle" / "wrapper").mkdir(parents=True)
    shutil.copy(REPO / "android_demo" / "gradlew", demo / "gradlew")
    props = f"distributionUrl={url.replace(':', chr(92) + ':')}\n"
    if sha:
        props += f"distributionSha256Sum={sha}\n"
    (demo / "gradle" / "wrapper" / "gradle-wrapper.properties").write_text(props)
    return demo


def run(demo: Path, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(demo / "gradlew"), ":app:assembleDebug"], capture_output=True, text=True,
                          env={**os.environ, "GRADLE_USER_HOME": str(home)}, timeout=120)


def test_gradlew_downloads_verifies_and_runs(tmp_path: Path) -> None:
    assert shutil.which("curl") or shutil.which("wget")
    z = fake_distribution(tmp_path)
    sha = hashlib.sha256(z.read_bytes()).hexdigest()
    demo = demo_copy(tmp_path, z.as_uri(), sha)
    r = run(demo, tmp_path / "home")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"fake gradle -p {demo} :app:assembleDebug"
    z.unlink()  # cached now: a second run needs no download
    assert run(demo, tmp_path / "home").returncode == 0


def test_gradlew_refuses_a_checksum_mismatch(tmp_path: Path) -> None:
    z = fake_distribution(tmp_path)
    demo = demo_copy(tmp_path, z.as_uri(), "0" * 64)
    r = run(demo, tmp_path / "home")
    assert r.returncode != 0 and "refusing to run it" in r.stderr


def test_checked_in_properties_name_a_gradle_distribution() -> None:
    props = (REPO / "android_demo" / "gradle" / "wrapper" / "gradle-wrapper.properties").read_text()
    assert "distributionUrl=https\\://services.gradle.org/distributions/gradle-8." in props
    # the real download is verified too: a sha256 is given (64 hex digits)
    assert re.search(r"^distributionSha256Sum=[0-9a-f]{64}$", props, re.M), props
    assert os.access(REPO / "android_demo" / "gradlew", os.X_OK)
