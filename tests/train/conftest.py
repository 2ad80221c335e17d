from __future__ import annotations

import pytest

from vitkit.data.digits import write_digits_imagefolder


@pytest.fixture(scope="session")
def digits16(tmp_path_factory):
    """The shipped digits as a 16x16 grey ImageFolder (stratified 80/20)."""
    return write_digits_imagefolder(tmp_path_factory.mktemp("digits16"), size=16)
