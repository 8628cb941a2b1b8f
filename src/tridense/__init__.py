"""tridense: joint metric depth, surface normals and semantic segmentation from one RGB image.

The package is organised by purpose (see the README for the map): ``data`` (sample contract, transforms,
datasets), ``geometry``, ``metrics``, ``viz``, ``layers``, ``models``, ``losses``, ``training``,
``analysis`` and the ``tridense`` command line in ``cli``. Importing the package has no side effects.
"""

__version__ = "0.1.0"
