from parley.engine.chunker import ClauseChunker, speakable


def chunks(text: str) -> list[str]:
    chunker = ClauseChunker()
    out: list[str] = []
    for word in text.split(" "):
        out += chunker.push(" " + word)  # LLM tokens carry their leading space
    return out + chunker.flush()


def test_first_clause_is_cut_early_at_punctuation() -> None:
    assert chunks("The capital of France is Paris, a city of 3.5 million people. It is famous.") == [
        "The capital of France is Paris,",
        "a city of 3.5 million people.",
        "It is famous.",
    ]


def test_first_clause_without_punctuation_is_cut_before_a_phrase() -> None:
    out = chunks("The sky is blue on a clear day because of the way our eyes perceive light.")
    assert out[0] == "The sky is blue"
    assert " ".join(out) == "The sky is blue on a clear day because of the way our eyes perceive light."


def test_markup_is_not_spoken() -> None:
    assert speakable("**Paris** is `nice` 🎉 [see](http://x)") == "Paris is nice see"
    assert chunks("Hello there. e.g. 3.5 is a number.") == ["Hello there.", "e.g. 3.5 is a number."]


def test_the_second_piece_is_cut_at_a_comma_and_kept_short() -> None:
    from parley.engine.chunker import ClauseChunker

    chunker = ClauseChunker()
    text = (
        "The capital of France is Paris. Paris is famous for its rich history, including the Louvre "
        "Museum, the Eiffel Tower and the Notre-Dame Cathedral. It is also known for its food."
    )
    pieces = [p for word in text.split(" ") for p in chunker.push(word + " ")] + chunker.flush()
    assert pieces[0] == "The capital of France is Paris."
    assert pieces[1] == "Paris is famous for its rich history,"
    # From the third piece on, whole sentences again (commas inside them stay).
    assert pieces[2] == "including the Louvre Museum, the Eiffel Tower and the Notre-Dame Cathedral."
    assert all(len(p.split()) <= 14 for p in pieces[:2])
