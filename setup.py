"""Package discovery for the five-folder layout (see DESIGN.md), and the optional native generator.

pyproject.toml holds the metadata; this file only maps the folders to import
names and finds their sub-packages, so a package added later installs without
editing a list. It also builds ``edgezo._ezdir_host``, the host CPU's fast path
of the direction generator (edgezo/native/ezdir_host.c, which compiles the
firmware's targets/firmware/ezdir.c): optional, so an install without a C
compiler still succeeds and uses the numpy path (edgezo/direction_native.py).
"""

from setuptools import Extension, find_packages, setup

FOLDERS = {
    "edgezo": "edgezo",
    "edgezo.models": "models",
    "edgezo.export": "export",
    "edgezo.targets": "targets",
    "edgezo.host": "host",
}

packages = []
for name, folder in FOLDERS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

# -ffp-contract=off keeps every float operation separate (bit-exact with the spec and the firmware)
native_generator = Extension(
    "edgezo._ezdir_host",
    sources=["edgezo/native/ezdir_host.c"],
    include_dirs=["targets/firmware"],
    depends=["targets/firmware/ezdir.c", "targets/firmware/ezdir.h"],
    extra_compile_args=["-O3", "-std=c99", "-ffp-contract=off", "-fno-math-errno", "-fno-semantic-interposition"],
    optional=True,
)

setup(packages=packages, package_dir=FOLDERS, ext_modules=[native_generator])
