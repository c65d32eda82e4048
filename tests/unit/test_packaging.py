"""
Packaging: the wheel carries the package and the twistd plugin (and no
plugin cache or twisted/__init__.py), and the example config documents
every key with its real default.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from bytestreamd import config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "etc", "bytestreamd.conf")


def _canBuildOffline() -> bool:
    """Whether this environment's setuptools can build a wheel by itself."""
    try:
        import setuptools
        from packaging.version import Version
    except ImportError:
        return False
    if Version(setuptools.__version__) >= Version("70.1"):
        return True  # bdist_wheel is part of setuptools
    try:
        import wheel  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.timeout(180)
def test_wheel_contents(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "setup.cfg", "README.rst", "constraints.txt"):
        if os.path.exists(os.path.join(ROOT, name)):
            shutil.copy(os.path.join(ROOT, name), src / name)
    shutil.copytree(os.path.join(ROOT, "bytestreamd"), src / "bytestreamd",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    plugins = src / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "twisted", "plugins",
                             "bytestreamd_plugin.py"), plugins)
    # A stale cache and a stray __init__.py, as a developer's tree may have:
    # neither may end up in the wheel.
    (plugins / "dropin.cache").write_bytes(b"stale")
    (plugins / "__init__.py").write_text("")
    (src / "twisted" / "__init__.py").write_text("")

    out = tmp_path / "out"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps",
               "--disable-pip-version-check", "-w", str(out), str(src)]
    if _canBuildOffline():
        command.insert(4, "--no-build-isolation")
    result = subprocess.run(command, capture_output=True, text=True,
                            timeout=170)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("bytestreamd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/bytestreamd_plugin.py" in names
    assert "bytestreamd/__init__.py" in names
    assert "bytestreamd/tap.py" in names
    assert "bytestreamd/config.py" in names
    for sub in ("control", "methods", "negotiation", "wire"):
        assert "bytestreamd/%s/__init__.py" % sub in names
    assert not [n for n in names if n.endswith("dropin.cache")]
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Requires-Python: >=3.11" in text
    for requirement in ("twisted", "wokkel", "pyOpenSSL",
                        "service-identity", "automat", "idna"):
        assert re.search(r"^Requires-Dist: %s\b" % re.escape(requirement),
                         text, re.M | re.I), requirement
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "bytestreamctl = bytestreamd.ctl:main" in (
        zipfile.ZipFile(wheel).read(entry).decode())


def test_constraints_pin_exact_versions():
    with open(os.path.join(ROOT, "constraints.txt")) as f:
        lines = [line.split("#")[0].strip() for line in f]
    pins = dict(line.split("==") for line in lines if line)
    lowered = {name.lower().replace("_", "-") for name in pins}
    for name in ("twisted", "wokkel", "pyopenssl", "cryptography",
                 "service-identity", "automat", "attrs", "zope.interface",
                 "idna", "pytest", "pytest-timeout", "slixmpp"):
        assert name in lowered, name
    for name, version in pins.items():
        assert re.match(r"^[0-9][0-9A-Za-z.+-]*$", version), (name, version)


def _exampleSections():
    """section -> {key: default} from the commented example lines."""
    sections: dict = {}
    current = None
    with open(EXAMPLE, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\[(\w+)\]", line)
            if m:
                current = sections.setdefault(m.group(1), {})
                continue
            m = re.match(r"^#(\w+) =(.*)$", line.rstrip("\n"))
            if m and current is not None:
                current[m.group(1)] = m.group(2).strip()
    return sections


def test_example_documents_every_key():
    sections = _exampleSections()
    assert set(sections) == set(config.KEYS)
    for section, keys in config.KEYS.items():
        for key in keys:
            assert key in sections[section], "[%s] %s" % (section, key)


def test_example_defaults_are_the_real_defaults():
    # Uncommenting every documented default must change nothing.
    values = {}
    for section, keys in _exampleSections().items():
        if section == "services":
            continue
        for key, value in keys.items():
            if (section, key) in {("xmpp", "jid"), ("xmpp", "password"),
                                  ("xmpp", "password_file")}:
                continue
            values["%s.%s" % (section, key)] = value
    base = {"xmpp.jid": "bot@example.org", "xmpp.password": "p"}
    environ = {"RUNTIME_DIRECTORY": "/run/bytestreamd"}
    documented = config.loadConfig(None, dict(base, **values),
                                   environ=environ)
    default = config.loadConfig(None, base, environ=environ)
    assert documented == default
    assert len(values) == sum(map(len, config.KEYS.values())) - 3


def test_example_parses_as_it_is():
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.read(EXAMPLE)
    assert set(parser.sections()) == set(config.KEYS)


def test_bootstrap_is_valid_bash():
    script = os.path.join(ROOT, "scripts", "bootstrap")
    assert os.access(script, os.X_OK)
    result = subprocess.run(["bash", "-n", script], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
