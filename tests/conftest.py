"""Test-wide set-up: Keras uses JAX and writes nothing outside a temporary folder.

Set before any test module imports Keras, which reads both variables once at import.
"""

import atexit
import os
import shutil
import tempfile

os.environ["KERAS_BACKEND"] = "jax"
_keras_home = tempfile.mkdtemp(prefix="dwconv-keras-home-")
os.environ["KERAS_HOME"] = _keras_home
atexit.register(shutil.rmtree, _keras_home, ignore_errors=True)
# One CPU device and no preallocation keep JAX small beside pytest-xdist's workers.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
