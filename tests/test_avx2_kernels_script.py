"""benchmarks/avx2_kernels.py's rewrite of ONNX Runtime's kernel choice: both branches of every copy
of it, nothing else, and a build it does not know refused."""

import pytest

from tests.conftest import load_script

VNNI_BRANCH = b"\xb8\x07\x00\x00\x00\xb9\x01\x00\x00\x00\x0f\xa2\xa8\x10\x74\x38"
AVX512_BRANCH = b"\x48\xf7\xd0\xa8\xe0\x0f\x84\xe8\x00\x00\x00"


@pytest.fixture(scope="module")
def avx2():
    return load_script("avx2_kernels_script", "avx2_kernels.py")


def test_every_copy_of_the_choice_has_both_branches_rewritten(avx2):
    library = b"head" + VNNI_BRANCH + b"\x90" * 7 + AVX512_BRANCH + b"mid" + VNNI_BRANCH + AVX512_BRANCH + b"tail"
    patched, copies = avx2.patch_library(library)
    assert copies == 2 and len(patched) == len(library)
    skip_vnni = VNNI_BRANCH[:-2] + b"\xeb" + VNNI_BRANCH[-1:]  # je -> jmp, same target
    never_avx512 = AVX512_BRANCH[:5] + avx2.NOP6
    assert patched == library.replace(VNNI_BRANCH, skip_vnni).replace(AVX512_BRANCH, never_avx512)


@pytest.mark.parametrize("library", [b"no kernel choice here", VNNI_BRANCH + VNNI_BRANCH + AVX512_BRANCH, AVX512_BRANCH])
def test_a_build_it_does_not_know_is_refused(avx2, library):
    with pytest.raises(avx2.PatternsNotFound, match="not recognised"):
        avx2.patch_library(library)
