"""
Build shim: the metadata lives in setup.cfg.

What this file must *not* do, although many Twisted plugin packages do it,
is regenerate the plugin cache (``list(getPlugins(IPlugin))``) here: under
PEP 517 this code runs at build time, in an isolated environment, so it
would either fail to import Twisted or write a ``dropin.cache`` into the
source tree, which could then be shipped and overwrite the installed cache
of every other Twisted plugin.  Twisted rebuilds a stale cache by itself
the next time ``twistd`` runs with write access; ``scripts/bootstrap``
refreshes it right after installing.  The build below also refuses to
package a ``dropin.cache`` or any ``__init__.py`` under ``twisted/``.
"""

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    """Never ship twisted/__init__.py, twisted/plugins/__init__.py or a cache."""

    def find_package_modules(self, package, package_dir):
        modules = build_py.find_package_modules(self, package, package_dir)
        if package.split(".")[0] == "twisted":
            modules = [m for m in modules if m[1] != "__init__"]
        return modules

    def check_package(self, package, package_dir):
        if package.split(".")[0] == "twisted":
            return None  # a namespace portion; no __init__.py on purpose
        return build_py.check_package(self, package, package_dir)


setup(
    # twisted.plugins has no __init__.py on purpose (the real one belongs to
    # Twisted); listing it installs bytestreamd_plugin.py next to Twisted's
    # own plugins, where twistd finds it.
    packages=find_packages(include=["bytestreamd", "bytestreamd.*"])
    + ["twisted.plugins"],
    cmdclass={"build_py": BuildPy},
)
