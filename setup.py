"""Package discovery; everything else is configured in pyproject.toml.

Every folder under ``circuitkg/`` is a package (namespace packages included, so the shipped dataset
folders install with their files), and so is every folder under ``compilers/`` and ``constraints/``,
installed as ``circuitkg.compilers`` and ``circuitkg.constraints`` through pyproject's
``package-dir``. ``[tool.setuptools.packages.find]`` cannot express the second part: it names a
package after its folder, so it would find ``compilers``, not ``circuitkg.compilers``.
"""

from setuptools import find_namespace_packages, setup

#: root folders installed inside the circuitkg namespace (pyproject.toml maps them in package-dir)
MAPPED = ("compilers", "constraints")


def packages() -> list[str]:
    found = find_namespace_packages(include=["circuitkg", "circuitkg.*"], exclude=["*__pycache__"])
    for root in MAPPED:
        sub = find_namespace_packages(include=[root, f"{root}.*"], exclude=["*__pycache__"])
        found += [f"circuitkg.{name}" for name in sub]
    return sorted(found)


setup(packages=packages())
