"""SamplingParams both ways: what `to_openai_kwargs` writes into a request,
`from_request` reads back, and a bad field is named."""

from __future__ import annotations

import json
import math

import pytest

from arbitrage.protocols import SamplingParams


@pytest.mark.parametrize("params", [SamplingParams(), SamplingParams(0.7, 0.95, 3), SamplingParams(temperature=2.0, seed=0)])
def test_round_trip_through_openai_kwargs(params):
    body = json.loads(json.dumps(params.to_openai_kwargs()))
    # No seed is sent for an unseeded request, so the default's seed fills it.
    expected = params if params.seed is not None else SamplingParams(params.temperature, params.top_p, 9)
    assert SamplingParams.from_request(body, SamplingParams(1.0, 0.5, 9)) == expected


def test_absent_or_null_fields_take_the_default():
    default = SamplingParams(0.4, 0.8, 5)
    assert SamplingParams.from_request({}, default) == default
    assert SamplingParams.from_request({"temperature": None, "top_p": None, "seed": None}, default) == default
    assert SamplingParams.from_request({"top_p": 1}) == SamplingParams(0.0, 1.0, None)


BAD_FIELDS = [
    ({"temperature": "hot"}, "'temperature' should be a number, got str"),
    ({"temperature": True}, "'temperature' should be a number, got bool"),
    ({"temperature": -0.1}, "'temperature' must be >= 0, got -0.1"),
    ({"temperature": math.inf}, "'temperature' must be a finite number"),
    ({"top_p": 0}, r"'top_p' must be in \(0, 1\], got 0"),
    ({"top_p": 1.5}, r"'top_p' must be in \(0, 1\], got 1.5"),
    ({"seed": 1.5}, "'seed' should be an integer, got float"),
    ({"seed": "7"}, "'seed' should be an integer, got str"),
]


@pytest.mark.parametrize("body, message", BAD_FIELDS)
def test_bad_fields_are_named(body, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams.from_request(body)
