"""Which packages the wheel holds; everything else is in pyproject.toml.

Every package under core/ is found, namespace folders too (the `ablab init` template's): a
new subpackage ships without an edit here. The
project's own experiments/, ablations/ and searches/ ship as core.examples.*: an installed
ablab resolves `base: digits_cnn` or `pretrain:digits_0_4_pretrain` in any project folder.
"""

from setuptools import find_namespace_packages, setup

EXAMPLES = {f"core.examples.{kind}": kind for kind in ("experiments", "ablations", "searches")}

setup(packages=[*find_namespace_packages(include=["core", "core.*"],
                                        exclude=["*.__pycache__"]), *EXAMPLES],
      package_dir=EXAMPLES)
