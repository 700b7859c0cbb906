"""The prompt pack: the built-in pack, TOML round trip and clear validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ioncannon.job.prompts import (
    PromptPackError,
    PromptStyle,
    default_pack_path,
    load_pack,
    save_pack,
)


def test_builtin_pack_has_at_least_twelve_valid_styles() -> None:
    styles = load_pack()
    assert default_pack_path().is_file()
    assert len(styles) >= 12
    keywords = {s.keyword for s in styles}
    assert {"portrait", "blackwhite", "oilpainting", "watercolour", "comic", "cyberpunk", "fantasy"} <= keywords
    assert all("{token}" in s.prompt and s.negative for s in styles)
    assert len({s.seed for s in styles}) == len(styles), "each style has its own seed"


def test_render_puts_identifier_and_class_where_the_token_is() -> None:
    style = PromptStyle("x", "an oil painting of {token}, warm light", "", 1)
    assert style.render("sks", "dog") == "an oil painting of sks dog, warm light"


def test_save_then_load_round_trips_every_field(tmp_path: Path) -> None:
    styles = [
        PromptStyle("one", 'a "quoted" photo of {token}', "blurry", 7, True),
        PromptStyle("two-b", "{token} in ñ unicode, line\nbreak", "", 4294967295, False),
    ]
    path = save_pack(tmp_path / "pack.toml", styles)
    assert load_pack(path) == styles
    assert not list(tmp_path.glob(".*.tmp")), "no temp file left behind"


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pack.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_missing_token_names_the_style(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[style]]\nkeyword = "ok"\nprompt = "{token}"\nseed = 1\n'
                            '[[style]]\nkeyword = "bad"\nprompt = "a photo of a man"\nseed = 2\n')
    with pytest.raises(PromptPackError, match=r"style 2 \(bad\).*no \{token\}"):
        load_pack(path)


def test_duplicate_keyword_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[style]]\nkeyword = "same"\nprompt = "{token}"\nseed = 1\n'
                            '[[style]]\nkeyword = "same"\nprompt = "{token} again"\nseed = 2\n')
    with pytest.raises(PromptPackError, match="'same' is used twice"):
        load_pack(path)


def test_save_refuses_an_invalid_pack(tmp_path: Path) -> None:
    with pytest.raises(PromptPackError, match="no \\{token\\}"):
        save_pack(tmp_path / "p.toml", [PromptStyle("a", "no token here", "", 1)])
    assert not (tmp_path / "p.toml").exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[style]]\nkeyword = "a"\nprompt = "{token}"\n', "missing seed"),
        ('[[style]]\nkeyword = "Has Space"\nprompt = "{token}"\nseed = 1\n', "lower-case letters"),
        ('[[style]]\nkeyword = "a"\nprompt = "{token}"\nseed = "x"\n', "whole number"),
        ("style = [\n", "not valid TOML"),
        ("", "has no styles"),
    ],
)
def test_other_errors_say_what_to_fix(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(PromptPackError, match=message):
        load_pack(_write(tmp_path, body))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PromptPackError, match="does not exist"):
        load_pack(tmp_path / "nope.toml")
