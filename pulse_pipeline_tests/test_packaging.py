"""The production wheel: only what production runs."""

import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_only_the_code_location_and_never_requires_moto(tmp_path: Path) -> None:
    subprocess.run(
        [str(ROOT / ".uv" / "bin" / "uv"), "build", "--wheel", "--out-dir", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("pulse_pipeline-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode()
    requires = [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    ]

    assert {name.split("/")[0] for name in names} == {"pulse_pipeline", metadata_name.split("/")[0]}
    assert any(r.startswith("dagster") for r in requires)
    assert not [
        r for r in requires if r.lower().startswith(("moto", "pytest", "werkzeug", "flask"))
    ]
