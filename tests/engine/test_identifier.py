"""The identifier linter: blocking errors, warnings from a real CLIPTokenizer, rare suggestions."""

from __future__ import annotations

import pytest

from ioncannon.doctor.identifier import CLASSES, COMMON_WORDS, lint_identifier


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - transformers type
    """A real CLIPTokenizer over a small BPE vocabulary that knows a few whole words."""
    from transformers import CLIPTokenizer

    from ioncannon.engine.models.load import write_tiny_tokenizer

    words = ("man", "dog", "ship", "zwx", "sks", "qkv", "bdr", "photo", "of")
    folder = write_tiny_tokenizer(tmp_path_factory.mktemp("tok"), words)
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def test_classes_are_the_notebooks() -> None:
    assert CLASSES == ("man", "woman", "person", "dog", "cat")


def test_a_rare_single_token_identifier_is_clean(tokenizer) -> None:  # noqa: ANN001
    lint = lint_identifier("zwx", "man", tokenizer)
    assert lint.ok and not lint.errors and not lint.warnings and lint.token_count == 1
    assert lint.prompt == "a photo of zwx man"


@pytest.mark.parametrize("ident, needle", [
    ("", "empty"), ("   ", "empty"), ("my/dog", "'/'"), ("my_dog", "first '_'"), ("zwx\n", "space"),
    ("a\tb", "control"), ("zw:x", "file systems"), ("x" * 41, "under 40"),
])
def test_blocking_errors(ident: str, needle: str) -> None:
    lint = lint_identifier(ident, "dog")
    assert not lint.ok and any(needle in e for e in lint.errors), lint.errors
    assert lint.suggestions  # always offer a way out


def test_bad_class_is_blocking() -> None:
    assert not lint_identifier("zwx", "").ok
    assert not lint_identifier("zwx", "my_class").ok


def test_common_word_warns_and_suggests_single_token_alternatives(tokenizer) -> None:  # noqa: ANN001
    lint = lint_identifier("ship", "man", tokenizer)
    assert lint.ok and any("common word" in w for w in lint.warnings)
    assert lint.suggestions and "ship" not in lint.suggestions
    for s in lint.suggestions:
        assert len(tokenizer.tokenize(s)) == 1 and s not in COMMON_WORDS


def test_multi_token_identifier_warns_with_the_pieces(tokenizer) -> None:  # noqa: ANN001
    lint = lint_identifier("zqxj", "woman", tokenizer)
    assert lint.ok and lint.token_count == 4
    assert any("splits into 4 tokens" in w for w in lint.warnings)


def test_class_collision_warns() -> None:
    assert any("'dog' (the class itself) already names" in w for w in lint_identifier("dog", "dog").warnings)
    assert any("'puppy' already names a kind of subject" in w for w in lint_identifier("puppy", "dog").warnings)
    assert any("'cat' already names" in w and "('person')" in w for w in lint_identifier("zwx cat", "person").warnings)
    assert not [w for w in lint_identifier("zwx", "cat").warnings if "names a kind" in w]
    assert any("contains the class word" in w for w in lint_identifier("zwxdog", "dog").warnings)


def test_known_bad_pick_and_case_notes() -> None:
    assert any("rifle" in w for w in lint_identifier("sks", "person").warnings)
    assert any("ignores case" in w for w in lint_identifier("ZWX", "man").warnings)


def test_without_a_tokenizer_only_syntax_checks_run() -> None:
    lint = lint_identifier("zqxj", "cat")
    assert lint.ok and lint.token_count is None and not lint.warnings


def test_a_broken_tokenizer_degrades_to_a_warning() -> None:
    class Broken:
        def tokenize(self, text: str) -> list[str]:
            raise RuntimeError("boom")

    lint = lint_identifier("zwx", "cat", Broken())
    assert lint.ok and any("could not tokenize" in w for w in lint.warnings)


def test_suggestions_are_deterministic(tokenizer) -> None:  # noqa: ANN001
    a = lint_identifier("ship", "man", tokenizer).suggestions
    assert a == lint_identifier("ship", "man", tokenizer).suggestions

