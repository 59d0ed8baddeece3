"""Maps the repository's top-level folders into the single ``bastion`` import namespace.

The design card keeps ``provenance/``, ``plugins/``, ``gateway/``, ``adapters/``, ``policies/`` and
``cli/`` at the top of the repository, but nothing may be installed as a generic top-level module.
Metadata lives in pyproject.toml; this file only computes the package list and folder mapping,
which setuptools cannot express declaratively for nested, re-rooted packages.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
MAPPED_FOLDERS = ("provenance", "plugins", "gateway", "adapters", "policies", "cli")

package_dir = {"bastion": "src/bastion"}
packages = ["bastion"] + [f"bastion.{p}" for p in find_packages(where="src/bastion")]
for folder in MAPPED_FOLDERS:
    package_dir[f"bastion.{folder}"] = folder
    packages.append(f"bastion.{folder}")
    packages += [f"bastion.{folder}.{p}" for p in find_packages(where=str(HERE / folder))]

setup(packages=packages, package_dir=package_dir)
