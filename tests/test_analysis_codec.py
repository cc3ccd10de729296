"""The coordinator's codec encodes an analysis once: its gRPC answer is the bytes it was stored as, a read from the
store is answered with the bytes it was read from, and nothing outlives the analysis."""
from __future__ import annotations

import dataclasses
import gc

from forex.analysis_coordinator.v1 import analysis_coordinator_pb2 as pb
from services.analysis_coordinator import grpc as codec


def test_an_analysis_is_encoded_once_and_forgotten_with_it(monkeypatch):
    stored = pb.Analysis(id="a1").SerializeToString()
    read = codec.analysis_from_bytes(stored)
    encodings = []
    encode = codec.analysis_to_pb
    monkeypatch.setattr(codec, "analysis_to_pb", lambda a: encodings.append(a.id) or encode(a))

    assert codec.analysis_to_bytes(read) is stored  # answered with the bytes it was read from

    fresh = dataclasses.replace(read, id="a2")  # a new analysis: encoded when stored, not again when answered
    first = codec.analysis_to_bytes(fresh)
    assert codec.analysis_to_bytes(fresh) is first and encodings == ["a2"]
    assert codec.analysis_from_bytes(first).id == "a2"

    keys = id(read), id(fresh)
    del read, fresh
    gc.collect()
    assert not set(keys) & set(codec._encoded)  # an analysis that died took its bytes with it
