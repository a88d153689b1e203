"""`publish --to URL` with no MODELS retires only what its own specs no longer publish: another
builder's models in the same bucket stay."""

from __future__ import annotations

from triton_repo.repo.store.from_local import owned_leftovers


def entry(source: str) -> dict:
    return {"source_model": source, "version": 1}


def test_a_variant_the_local_repository_no_longer_has_is_retired_but_another_builders_model_stays():
    local = {"models": {"digits_fp32": entry("digits"), "digits": entry("digits")}}
    bucket = {
        "models": {
            "digits_fp32": entry("digits"),
            "digits_int8": entry("digits"),  # refused by this builder's last build: retired
            "digits": entry("digits"),
            "mobilenet_v2_fp32": entry("mobilenet_v2"),  # another builder's: stays
            "mobilenet_v2": entry("mobilenet_v2"),
        }
    }
    assert owned_leftovers(local, bucket) == ("digits_int8",)


def test_an_empty_bucket_retires_nothing():
    assert owned_leftovers({"models": {"digits_fp32": entry("digits")}}, None) == ()
