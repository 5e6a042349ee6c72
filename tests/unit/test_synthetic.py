"""``rlreward.offline.synthetic``: the one vocabulary and noise-image maker of the offline tools."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys

import pytest

from rlreward.offline.synthetic import WORDS, noise_image, noise_png, text_of_length, token_noise_image


@pytest.mark.parametrize("n", [1, 2, 7, 40, 333])
def test_text_of_length_is_exactly_n_characters_of_the_vocabulary(n):
    text = text_of_length(n, random.Random(n))
    assert len(text) == n
    *whole, last = text.split()
    assert set(whole) <= set(WORDS)
    assert any(w.startswith(last.rstrip(".")) for w in WORDS)  # the last word may be cut to fit


def test_noise_png_is_the_same_bytes_in_another_process_for_a_string_seed():
    code = (
        "import hashlib; from rlreward.offline.synthetic import noise_png; "
        "print(hashlib.sha256(noise_png(60, 45, 'g3/0/7')).hexdigest())"
    )
    out = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert out == {hashlib.sha256(noise_png(60, 45, "g3/0/7")).hexdigest()}
    assert noise_png(60, 45, "g3/0/8") != noise_png(60, 45, "g3/0/7")


def test_noise_is_blocks_of_one_patch_and_token_images_are_whole_28px_cells():
    import numpy as np

    arr = np.asarray(noise_image(60, 45, 3))
    assert arr.shape == (45, 60, 3)
    assert (arr[:14, :14] == arr[0, 0]).all() and (arr[14:28, 14:28] == arr[14, 14]).all()
    img = token_noise_image(10, 0)  # 3 rows x 4 columns of 28 px cells: 12 visual tokens, >= 10
    assert img.size == (4 * 28, 3 * 28)
