"""Package discovery for the five-folder layout (see DESIGN.md).

pyproject.toml holds the metadata; this file only maps the folders to import
names and finds their sub-packages, so a package added later installs without
editing a list.
"""

from setuptools import find_packages, setup

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

setup(packages=packages, package_dir=FOLDERS)
