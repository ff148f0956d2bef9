"""The duplicate check through the title index, against scoring every open matter (the check as
it was, ``similarity.exact_duplicates``), on SQLite and PostgreSQL.

The read model is filled directly by intake's ``MatterListProjection`` (``fill_read_model``) with
real-looking matters of a township (``tests/support/matter_corpus.py``); the new matters checked
are more of the same corpus, so most have near-duplicates among those filled in. Timings are the
benchmark's (``python -m bench.submit``), never asserted here.
"""

from __future__ import annotations

import functools
import random
import unicodedata

import pytest

from services.intake import similarity
from services.intake.similarity import (
    CONTENT_WEIGHT,
    TITLE_WEIGHT,
    content_ngrams,
    dice,
    exact_duplicates,
    normalise,
    possible_duplicates,
    title_ngrams,
)
from tests.support.matter_corpus import fill_read_model, matters, title_index, title_index_expected

HERE = "331081100"  # 泽国镇
#: "A few thousand real-looking matters", and the new ones checked against them.
CORPUS = 3000
QUERIES = 200


def test_normalise_is_the_plain_definition_at_a_fraction_of_its_cost():
    """``normalise`` skips NFKC for a text already in it, runs it between CJK ideographs only,
    and asks about characters in runs; it answers as the plain definition does, for every
    character of the BMP beside ideographs and combining marks, and for mixed texts (CJK,
    full-width forms, combining marks, Hangul jamo, punctuation)."""

    def plain(text: str) -> str:
        folded = unicodedata.normalize("NFKC", text).lower()
        return "".join(ch for ch in folded if unicodedata.category(ch)[0] not in "PSZC")

    for code in range(0x10000):
        char = chr(code)
        for text in (char, f"路{char}a，", f"a{char}\u0301路{char}", f"路\u0301{char}，"):
            assert normalise(text) == plain(text), hex(code)
    rng = random.Random(21)
    alphabet = "泽国镇路ＡＢｃ１２ab01 ，。！？（）\t\n①㈠ﬁİΣσ\u0301\u0327e\u3000\u1100\u1161\uac00"
    for _ in range(20_000):
        text = "".join(
            rng.choice(alphabet) if rng.random() < 0.7 else chr(rng.randrange(0x30000))
            for _ in range(rng.randrange(30))
        )
        assert normalise(text) == plain(text), ascii(text)


@pytest.fixture
async def corpus(engine):
    """The read model of 泽国镇 with ``CORPUS`` matters: their (id, title, content), in order."""
    texts = list(matters(CORPUS, seed=3))
    ids = await fill_read_model(engine, HERE, texts)
    return [(matter_id, title, content) for matter_id, (title, content) in zip(ids, texts, strict=True)]


def scoring_every_matter(corpus, title: str, content: str) -> list[dict]:
    """``exact_duplicates`` without the database: every matter of ``corpus`` scored, the same
    functions, the same order and rounding (its texts' grams taken once, for all the checks)."""
    grams = _grams(tuple(corpus))
    wanted_title, wanted_content = title_ngrams(title), content_ngrams(content)
    scored = []
    for matter_id, title_grams, content_grams in grams:
        title_score = dice(wanted_title, title_grams)
        if TITLE_WEIGHT * title_score + CONTENT_WEIGHT < 0.35:
            continue  # out of reach whatever the content
        score = TITLE_WEIGHT * title_score + CONTENT_WEIGHT * dice(wanted_content, content_grams)
        if score >= 0.35:
            scored.append((-score, matter_id))
    return [{"id": matter_id, "score": round(-score, 4)} for score, matter_id in sorted(scored)[:10]]


@functools.lru_cache(maxsize=2)
def _grams(corpus: tuple) -> list[tuple[str, set[str], set[str]]]:
    return [(matter_id, title_ngrams(title), content_ngrams(content)) for matter_id, title, content in corpus]


async def test_the_index_top_10_keeps_at_least_95_percent_of_what_scoring_every_matter_finds(engine, corpus):
    new = list(matters(CORPUS + QUERIES, seed=3))[CORPUS:]
    for title, content in new[:10]:  # the reference is exact_duplicates'
        exact = await exact_duplicates(engine, jurisdiction=HERE, title=title, content=content)
        assert [{"id": m["id"], "score": m["score"]} for m in exact] == scoring_every_matter(corpus, title, content)
    found = expected = 0
    for title, content in new:
        exact = {m["id"]: m["score"] for m in scoring_every_matter(corpus, title, content)}
        indexed = await possible_duplicates(engine, jurisdiction=HERE, title=title, content=content)
        # what the index lists is scored as before: the same score for the same matter, best first
        assert [m["score"] for m in indexed] == sorted((m["score"] for m in indexed), reverse=True)
        assert all(m["score"] >= 0.35 for m in indexed) and len(indexed) <= 10
        for listed in indexed:
            assert exact.get(listed["id"], listed["score"]) == listed["score"]
        found += len(exact.keys() & {m["id"] for m in indexed})
        expected += len(exact)
    assert expected > QUERIES  # most new matters have near-duplicates among those filled in
    recall = found / expected
    assert recall >= 0.95, f"the index's top 10 keep {recall:.1%} of the exact top 10"
    assert await title_index(engine) == await title_index_expected(engine)


async def test_on_a_small_level_the_answer_is_the_same_as_scoring_every_matter(engine):
    """When the new title's grams have fewer index rows than the check reads and fewer matters
    than it scores, nothing is left out: 12 open matters, new titles of at most 40 grams."""
    small = 12
    assert small * 40 <= similarity.POSTINGS and small <= similarity.CANDIDATES
    texts = list(matters(small + 30, seed=5))
    assert all(len(title_ngrams(title)) <= 40 for title, _ in texts)
    ids = await fill_read_model(engine, HERE, texts[:small])
    for title, content in texts[small:]:
        exact = await exact_duplicates(engine, jurisdiction=HERE, title=title, content=content)
        assert await possible_duplicates(engine, jurisdiction=HERE, title=title, content=content) == exact
    # a matter is not its own duplicate, also when the index already holds it
    title, content = texts[0]
    own = await possible_duplicates(engine, jurisdiction=HERE, title=title, content=content, exclude_id=ids[0])
    assert ids[0] not in {m["id"] for m in own}
    assert own == await exact_duplicates(engine, jurisdiction=HERE, title=title, content=content, exclude_id=ids[0])


async def test_a_threshold_the_content_alone_can_reach_scores_every_matter(engine):
    """Below ``CONTENT_WEIGHT`` a matter sharing no title gram can be listed, which no title index
    finds: such a check scores every open matter, as before."""
    await fill_read_model(engine, HERE, [("关于加强农村饮用水安全保障的建议", "园区道路破损，货车通行困难。")])
    found = await possible_duplicates(
        engine, jurisdiction=HERE, title="工业园区路面坑洼", content="园区道路破损，货车通行困难。", threshold=0.2
    )
    assert [m["title"] for m in found] == ["关于加强农村饮用水安全保障的建议"]
    assert await possible_duplicates(engine, jurisdiction=HERE, title="工业园区路面坑洼", content="园区道路破损") == []
