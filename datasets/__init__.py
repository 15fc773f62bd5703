"""Dataset layer: readers, generated shapes, transforms, batching.

albumentations checks PyPI for a newer release at import unless told not to; set the
switch here, before any submodule imports it.
"""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
