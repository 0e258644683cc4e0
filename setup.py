"""Which packages the wheel holds; everything else is in pyproject.toml.

Every package under core/ is found (a new subpackage ships without an edit here), and the
project's own experiments/, ablations/ and searches/ ship as core.examples.*: an installed
ablab resolves `base: digits_cnn` or `pretrain:digits_0_4_pretrain` in any project folder.
"""

from setuptools import find_packages, setup

EXAMPLES = {f"core.examples.{kind}": kind for kind in ("experiments", "ablations", "searches")}

setup(packages=[*find_packages(include=["core", "core.*"]), *EXAMPLES],
      package_dir=EXAMPLES)
