"""Tests of the pure rank-fusion functions."""

from __future__ import annotations

import copy
import math

import pytest
from langchain_core.documents import Document

from langchain_rag_async.errors import ConfigurationError, RAGError
from langchain_rag_async.retrievers.fusion import (
    document_key,
    fuse_ranked_ids,
    reciprocal_rank_fusion,
    weighted_score_fusion,
)


def doc(doc_id: str | None, text: str | None = None, **metadata: object) -> Document:
    return Document(id=doc_id, page_content=text or f"text of {doc_id}", metadata=metadata)


def ids(documents: list[Document]) -> list[str | None]:
    return [d.id for d in documents]


A, B, C, D = doc("a"), doc("b"), doc("c"), doc("d")


# ----------------------------------------------------------------------------- RRF


def test_rrf_hand_computed_values() -> None:
    dense = [(A, 0.9), (B, 0.8), (C, 0.1)]
    sparse = [(C, 12.0), (A, 3.0)]

    fused = reciprocal_rank_fusion([dense, sparse], c=60)

    expected = {
        "a": 1 / 61 + 1 / 62,
        "c": 1 / 63 + 1 / 61,
        "b": 1 / 62,
    }
    assert ids(fused) == ["a", "c", "b"]
    for document in fused:
        assert document.metadata["scores"]["fused"] == pytest.approx(expected[str(document.id)])
    a, c, b = fused
    assert a.metadata["scores"] == {
        "dense": 0.9,
        "sparse": 3.0,
        "fused": pytest.approx(expected["a"]),
    }
    assert b.metadata["scores"]["sparse"] is None
    assert c.metadata["scores"]["dense"] == 0.1


def test_rrf_zero_score_is_kept_not_none() -> None:
    fused = reciprocal_rank_fusion([[(A, 0.0)], [(A, 0.0)]])
    assert fused[0].metadata["scores"]["dense"] == 0.0
    assert fused[0].metadata["scores"]["sparse"] == 0.0


def test_rrf_small_c_hand_computed() -> None:
    fused = reciprocal_rank_fusion([[(A, 1.0), (B, 1.0)], [(B, 1.0)]], c=0)
    assert ids(fused) == ["b", "a"]
    assert fused[0].metadata["scores"]["fused"] == pytest.approx(1 / 2 + 1 / 1)
    assert fused[1].metadata["scores"]["fused"] == pytest.approx(1.0)


def test_rrf_weights_change_the_winner() -> None:
    dense = [(A, 0.9), (B, 0.5)]
    sparse = [(B, 7.0), (A, 1.0)]

    assert ids(reciprocal_rank_fusion([dense, sparse], weights=[2.0, 1.0])) == ["a", "b"]
    assert ids(reciprocal_rank_fusion([dense, sparse], weights=[1.0, 2.0])) == ["b", "a"]
    only_sparse = reciprocal_rank_fusion([dense, sparse], weights=[0.0, 1.0])
    assert only_sparse[0].metadata["scores"]["fused"] == pytest.approx(1 / 61)


def test_rrf_deduplicates_by_id_and_by_content_without_id() -> None:
    same_a = doc("a", "another copy of a", origin="sparse")
    anon_1 = doc(None, "anonymous text")
    anon_2 = doc(None, "anonymous text")
    fused = reciprocal_rank_fusion([[(A, 1.0), (anon_1, 0.5)], [(same_a, 2.0), (anon_2, 1.0)]])

    assert len(fused) == 2
    assert fused[0].page_content == A.page_content  # first occurrence wins
    assert fused[1].id is None and fused[1].page_content == "anonymous text"


def test_duplicates_within_one_list_use_first_rank() -> None:
    fused = reciprocal_rank_fusion([[(A, 0.9), (A, 0.1)]], names=("dense",))
    assert len(fused) == 1
    assert fused[0].metadata["scores"] == {"dense": 0.9, "fused": pytest.approx(1 / 61)}


def test_rrf_ties_are_deterministic() -> None:
    # b and c get the same fused score and the same best rank; the id decides.
    first = reciprocal_rank_fusion([[(C, 1.0)], [(B, 1.0)]])
    second = reciprocal_rank_fusion([[(B, 1.0)], [(C, 1.0)]])
    assert ids(first) == ids(second) == ["b", "c"]


def test_ties_prefer_the_better_best_rank() -> None:
    # With c=0: x only at rank 1 with weight 1 -> 1/1; y only at rank 2 with weight 2 -> 2/2.
    # Equal fused scores; x wins on its better best rank although "z-x" > "a-y" by id.
    x, y = doc("z-x"), doc("a-y")
    fused = reciprocal_rank_fusion([[(x, 1.0)], [(D, 1.0), (y, 1.0)]], weights=[1.0, 2.0], c=0, k=3)
    scores = {d.id: d.metadata["scores"]["fused"] for d in fused}
    assert scores["z-x"] == pytest.approx(scores["a-y"])
    assert ids(fused) == ["d", "z-x", "a-y"]  # z-x has best rank 1, a-y only 2


def test_empty_lists() -> None:
    assert reciprocal_rank_fusion([[], []]) == []
    assert weighted_score_fusion([[], []]) == []
    assert ids(reciprocal_rank_fusion([[], [(A, 1.0)]])) == ["a"]


def test_k_truncates() -> None:
    dense = [(A, 0.9), (B, 0.8), (C, 0.7), (D, 0.6)]
    assert ids(reciprocal_rank_fusion([dense, []], k=2)) == ["a", "b"]
    assert reciprocal_rank_fusion([dense, []], k=0) == []
    assert ids(weighted_score_fusion([dense, []], k=3)) == ["a", "b", "c"]


@pytest.mark.parametrize("fuse", [reciprocal_rank_fusion, weighted_score_fusion])
def test_inputs_are_not_mutated(fuse: object) -> None:
    original = doc("a", "text", source="x.md", tags=["t"])
    dense = [(original, 0.5), (B, 0.1)]
    sparse = [(B, 3.0)]
    before = copy.deepcopy((dense, sparse))

    fused = fuse([dense, sparse])  # type: ignore[operator]

    assert (dense, sparse) == before
    assert "scores" not in original.metadata
    returned = next(d for d in fused if d.id == "a")
    assert returned is not original
    assert returned.metadata["source"] == "x.md"
    assert set(returned.metadata["scores"]) == {"dense", "sparse", "fused"}


def test_custom_names_and_three_lists() -> None:
    fused = reciprocal_rank_fusion(
        [[(A, 1.0)], [(B, 2.0)], [(A, 3.0)]], names=("dense", "sparse", "keyword")
    )
    assert ids(fused) == ["a", "b"]
    assert fused[0].metadata["scores"] == {
        "dense": 1.0,
        "sparse": None,
        "keyword": 3.0,
        "fused": pytest.approx(2 / 61),
    }


@pytest.mark.parametrize("fuse", [reciprocal_rank_fusion, weighted_score_fusion])
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": [1.0]}, "weight"),
        ({"weights": [1.0, 1.0, 1.0]}, "weight"),
        ({"weights": [1.0, -0.5]}, "non-negative"),
        ({"weights": [0.0, 0.0]}, "positive"),
        ({"weights": [1.0, math.nan]}, "finite"),
        ({"names": ("dense",)}, "names"),
        ({"names": ("dense", "dense")}, "names"),
        ({"names": ("dense", "fused")}, "names"),
        ({"k": -1}, "k must"),
    ],
)
def test_validation(fuse: object, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        fuse([[(A, 1.0)], [(B, 1.0)]], **kwargs)  # type: ignore[operator]
    assert isinstance(info.value, ConfigurationError)  # a library error that is a ValueError


def test_rrf_rejects_negative_c() -> None:
    with pytest.raises(ValueError, match="c must") as info:
        reciprocal_rank_fusion([[(A, 1.0)], []], c=-1)
    assert isinstance(info.value, RAGError)


# ----------------------------------------------------------------------------- weighted


def test_weighted_hand_computed_values() -> None:
    dense = [(A, 0.9), (B, 0.5), (C, 0.1)]  # normalised: 1.0, 0.5, 0.0
    sparse = [(C, 20.0), (D, 10.0)]  # normalised: 1.0, 0.0

    fused = weighted_score_fusion([dense, sparse], weights=[0.6, 0.4])

    expected = {"a": 0.6, "b": 0.3, "c": 0.4, "d": 0.0}
    assert ids(fused) == ["a", "c", "b", "d"]
    for document in fused:
        assert document.metadata["scores"]["fused"] == pytest.approx(expected[str(document.id)])
    assert fused[1].metadata["scores"] == {
        "dense": 0.1,
        "sparse": 20.0,
        "fused": pytest.approx(0.4),
    }


def test_weighted_single_element_and_equal_scores_do_not_divide_by_zero() -> None:
    fused = weighted_score_fusion([[(A, 0.3)], [(B, 5.0), (C, 5.0)]])
    scores = {d.id: d.metadata["scores"]["fused"] for d in fused}
    assert scores == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert ids(fused) == ["a", "b", "c"]  # all tied: best rank, then id


def test_weighted_handles_negative_scores() -> None:
    fused = weighted_score_fusion([[(A, -1.0), (B, -3.0)], []])
    assert [d.metadata["scores"]["fused"] for d in fused] == [1.0, 0.0]


def test_weighted_rejects_non_finite_scores() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        weighted_score_fusion([[(A, math.inf)], []])


def test_document_key() -> None:
    assert document_key(doc("x")) == "id:x"
    assert document_key(doc(None, "t")) == document_key(doc(None, "t"))
    assert document_key(doc(None, "t")) != document_key(doc(None, "u"))
    assert document_key(doc("x")) != document_key(doc(None, "x"))


def test_each_lists_best_scores_exactly_its_weight_so_ties_break_by_rank_then_id() -> None:
    """weight * ((s - low) / span): the top of a list gets exactly 1.0, never 0.999..."""
    for step in range(1, 400):
        top = 0.6 + step / 1000
        dense = [
            (Document(id="A", page_content="A"), top),
            (Document(id="C", page_content="C"), 0.6),
        ]
        sparse = [
            (Document(id="B", page_content="B"), 12.0),
            (Document(id="C", page_content="C"), 2.0),
        ]
        fused = weighted_score_fusion([dense, sparse])
        assert [doc.id for doc in fused] == ["A", "B", "C"], top
        assert [doc.metadata["scores"]["fused"] for doc in fused[:2]] == [1.0, 1.0], top


# ----------------------------------------------------------------------------- ids


@pytest.mark.parametrize("method", ["rrf", "weighted"])
def test_fusing_ids_matches_fusing_documents(method: str) -> None:
    dense = [(A, 0.9), (B, 0.8), (C, 0.1), (D, 0.05)]
    sparse = [(C, 12.0), (A, 3.0), (D, 3.0)]
    fuse = reciprocal_rank_fusion if method == "rrf" else weighted_score_fusion
    documents = fuse([dense, sparse], weights=[0.7, 1.3], k=3)

    as_ids = [[(str(d.id), s) for d, s in ranked] for ranked in (dense, sparse)]
    hits = fuse_ranked_ids(as_ids, method=method, weights=[0.7, 1.3], k=3)  # type: ignore[arg-type]

    assert [hit.id for hit in hits] == ids(documents)
    assert [hit.scores for hit in hits] == [d.metadata["scores"] for d in documents]
    assert [hit.fused for hit in hits] == [d.metadata["scores"]["fused"] for d in documents]


def test_fusing_ids_checks_its_arguments() -> None:
    ranked = [[("a", 1.0)], [("b", 2.0)]]
    with pytest.raises(ValueError, match="method must be"):
        fuse_ranked_ids(ranked, method="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must not be negative"):
        fuse_ranked_ids(ranked, k=-1)
    with pytest.raises(ValueError, match="non-finite") as info:
        fuse_ranked_ids([[("a", math.nan)], []], method="weighted")
    assert isinstance(info.value, RAGError)
    assert fuse_ranked_ids([[], []]) == []
    assert [hit.id for hit in fuse_ranked_ids([[("a", 1.0), ("a", 0.5)], [("a", 3.0)]])] == ["a"]
