"""The package namespace: lazy submodules and estimators, and a light ``import fastem``."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import fastem

PACKAGE_DIR = pathlib.Path(fastem.__file__).parent


def _public_submodules():
    names = set()
    for entry in PACKAGE_DIR.iterdir():
        if entry.name.startswith("_"):
            continue
        if entry.suffix == ".py":
            names.add(entry.stem)
        elif entry.is_dir() and (entry / "__init__.py").exists():
            names.add(entry.name)
    return sorted(names)


def _run(code):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PACKAGE_DIR.parent) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_public_submodule_is_listed():
    assert sorted(fastem._SUBMODULES) == _public_submodules()


@pytest.mark.parametrize("name", _public_submodules())
def test_submodule_reachable_after_plain_import(name):
    code = (
        "import json, sys, types, fastem\n"
        f"assert 'fastem.{name}' not in sys.modules\n"
        f"mod = fastem.{name}\n"
        "print(json.dumps([isinstance(mod, types.ModuleType), mod.__name__,\n"
        f"                  mod is sys.modules['fastem.{name}'], {name!r} in dir(fastem)]))\n"
    )
    assert _run(code) == [True, f"fastem.{name}", True, True]


def test_dir_lists_submodules_and_estimators():
    listed = set(dir(fastem))
    assert set(_public_submodules()) <= listed
    assert {"GaussianMixture", "MiniBatchGaussianMixture", "load", "__version__"} <= listed


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        fastem.no_such_thing  # noqa: B018


def test_plain_import_does_not_load_heavy_dependencies():
    code = (
        "import json, sys, fastem\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'numba', 'sklearn', 'scipy'})\n"
        "print(json.dumps(heavy))\n"
    )
    assert _run(code) == []
