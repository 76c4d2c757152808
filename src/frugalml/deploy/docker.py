"""`frugalml deploy docker`: a build context that serves one bundle from a slim CPU image.

The context holds the Dockerfile, a `.dockerignore` that lets only what it copies reach the
builder, `requirements.txt` (frugalml, from the package index or a wheel given with `--wheel`),
`constraints.txt` (the versions of the environment that wrote it, so the image runs the tested
set) and the bundle itself, which `serve` verifies file by file when it loads it.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
from importlib import resources
from pathlib import Path
from string import Template

from frugalml import __version__
from frugalml.bundle import Bundle
from frugalml.deploy.config import BUNDLE_DIR, HOME, PORT, UID, DockerConfig, default_image
from frugalml.deploy.output import Written, write_folder
from frugalml.errors import FrugalError

TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def template(name: str) -> str:
    return (resources.files("frugalml.deploy") / "templates" / name).read_text(encoding="utf-8")


def _release(version: str) -> str:
    """A version without its local label: 2.13.0+cpu is 2.13.0 on the package index."""
    return version.split("+", 1)[0]


def constraints() -> str:
    """name==version for every distribution installed here but frugalml and editable installs."""
    pins = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name or name.lower() == "frugalml":
            continue
        direct = dist.read_text("direct_url.json")
        if direct and json.loads(direct).get("dir_info", {}).get("editable"):
            continue
        pins[re.sub(r"[-_.]+", "-", name).lower()] = _release(dist.version)
    header = f"# The versions frugalml {__version__} ran with where this context was written.\n"
    return header + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def _check_wheel(wheel: str) -> Path:
    path = Path(wheel)
    if not path.is_file() or not re.fullmatch(r"frugalml-[^-]+-.+\.whl", path.name):
        raise FrugalError(
            f"--wheel {wheel}: not a frugalml wheel file (build one: pip wheel --no-deps -w dist .)"
        )
    return path


def dockerfile(bundle: Bundle, config: DockerConfig, image: str) -> str:
    torch = config.torch or _release(importlib.metadata.version("torch"))
    return Template(template("Dockerfile")).substitute(
        bundle_id=bundle.id,
        bundle_name=bundle.name,
        image=image,
        python=config.python,
        torch=torch,
        torch_index=TORCH_CPU_INDEX,
        home=HOME,
        uid=UID,
        port=PORT,
        drain=config.drain_s,
        bundle_dir=BUNDLE_DIR,
        copy_wheels="COPY wheels/ ./wheels/\n" if config.wheel else "",
    )


def write_docker_context(bundle: Bundle, output: str | Path, config: DockerConfig | None = None) -> Written:
    """Write the build context for `bundle` into `output` (absent or empty)."""
    config = config or DockerConfig()
    source = bundle.path
    assert source is not None
    wheel = _check_wheel(config.wheel) if config.wheel else None
    image = default_image(bundle.name, bundle.id)
    requirement = f"./wheels/{wheel.name}" if wheel else f"frugalml=={__version__}"
    files = {
        "Dockerfile": dockerfile(bundle, config, image),
        ".dockerignore": template("dockerignore"),
        "requirements.txt": requirement + "\n",
        "constraints.txt": constraints(),
    }

    def populate(folder: Path) -> None:
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        shutil.copytree(source, folder / "bundle")
        if wheel:
            (folder / "wheels").mkdir()
            shutil.copy2(wheel, folder / "wheels" / wheel.name)

    written = write_folder(output, populate)
    listed = [*files, "bundle/", *([f"wheels/{wheel.name}"] if wheel else [])]
    return Written(written, listed, image, f"docker build -t {image} {written}")
