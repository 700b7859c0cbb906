"""Lint the subject identifier (the rare token DreamBooth binds the subject to) before training."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ioncannon.job.validate import word_problems

CLASSES = ("man", "woman", "person", "dog", "cat")

# Words that collide with a class: the model already has a strong idea of these.
_CLASS_WORDS = {
    "man", "men", "woman", "women", "person", "people", "dog", "dogs", "cat", "cats", "guy",
    "boy", "girl", "lady", "male", "female", "puppy", "kitten", "kitty", "human", "child", "kid",
    "baby", "face", "portrait", "photo", "picture",
}

# A small list of common English words (and words people often pick as identifiers). Training
# on one of these bends what the model knows about the word instead of learning a new subject.
COMMON_WORDS = frozenset("""
a about above after again air all also always am an and animal any apple are art as at away
baby back bad ball be bear beautiful bed been before best big bird black blue boat body book
both box boy bread brother brown but by call came can car cat child city cold come could cute
dad day did do does dog door down dream each ear earth eat end even every eye face fall family
far father fast fire fish five fly food for four free friend from fun game girl give go god
gold good great green grey gray hair hand happy hard has have he head heart hello her here
high him his home horse hot house how i ice if in is it its jack joy just key kid king kind
know lady last leaf left life light like lion little long look love make man many me men mom
moon more most mother mountain mouse mr mrs ms much music my name new nice night no not now
of off old on one only open or orange other our out over own paper park people pet photo pink
place play please pretty prince princess queen quick rain red right river road rock rose run
sad same say sea see she ship shoe short sky small snow so some son song star stone sun sweet
take tall tea than that the their them then there they thing this three time to today tom
too top tree true two up us very war water way we well what when where white who why will
wind window with wolf woman word work world yellow yes you young your zoo
ace alex anna ben bob charlie dan david emma eva jane jen joe john kate leo lily lucy luna
max mia mike nick sam sara sarah tim zoe buddy bella coco daisy rocky teddy toby milo oscar
sks
""".split())

# Known bad picks with a story worth telling.
_NOTES = {"sks": "'sks' is also a rifle: the base model may draw guns"}

_CONSONANTS = "bcdfghjklmnpqrstvwxz"
_STARTERS = ("zwx", "ohwx", "qwv", "xjq", "vkz")


@dataclass
class IdentifierLint:
    """The verdict on an identifier: blocking errors, warnings, rare alternatives, the prompt."""

    ok: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    prompt: str = ""
    token_count: int | None = None


def _tokens(tokenizer: Any, text: str) -> list[str]:
    """BPE pieces of `text` without the start/end markers (CLIPTokenizer.tokenize)."""
    return [t for t in tokenizer.tokenize(text) if t not in ("<|startoftext|>", "<|endoftext|>")]


def _syntax_errors(text: str, what: str) -> list[str]:
    # the same rules as the job's door (job/validate.py), so the wizard, the doctor and job files agree
    return word_problems(text, what)


def _suggest(identifier: str, class_name: str, tokenizer: Any, count: int = 3) -> list[str]:
    """Short rare strings, checked to be a single token when a tokenizer is at hand."""
    rng = random.Random(f"{identifier}|{class_name}")
    pool = list(_STARTERS)
    while len(pool) < 400:
        n = rng.choice((3, 3, 4))
        pool.append("".join(rng.choice(_CONSONANTS) for _ in range(n)))
    picks: list[str] = []
    for cand in dict.fromkeys(pool):
        if cand == identifier.lower() or cand in COMMON_WORDS:
            continue
        if tokenizer is not None:
            try:
                if len(_tokens(tokenizer, cand)) != 1:
                    continue
            except Exception:  # noqa: BLE001 - a broken tokenizer should not break the screen
                return picks
        picks.append(cand)
        if len(picks) == count:
            break
    return picks


def lint_identifier(identifier: str, class_name: str, tokenizer: Any = None) -> IdentifierLint:
    """Check the identifier (and class) the way training will use them; never raises."""
    errors = _syntax_errors(identifier, "identifier") + _syntax_errors(class_name, "class")
    warnings: list[str] = []
    ident, cls = identifier.strip(), class_name.strip()
    low = ident.lower()
    prompt = f"a photo of {ident} {cls}".strip() if ident else ""
    if ident:
        words = low.split()
        if len(words) > 1:
            warnings.append("the identifier has several words: one short rare word binds best")
        if low in COMMON_WORDS or any(w in COMMON_WORDS for w in words):
            word = low if low in COMMON_WORDS else next(w for w in words if w in COMMON_WORDS)
            warnings.append(_NOTES.get(word, f"'{word}' is a common word: training would change what "
                                             "the model thinks it means; pick a rare one"))
        clash = next((w for w in (low, *words) if w == cls.lower() or w in _CLASS_WORDS), None) if cls else None
        if clash is not None:
            # Name the word that clashes and the class as chosen, so the message is true whatever was picked.
            same = " (the class itself)" if clash == cls.lower() else ""
            warnings.append(f"'{clash}'{same} already names a kind of subject: the identifier should be a new "
                            f"word, and the class ('{cls}') says what kind of thing it is")
        elif cls and cls.lower() in low:
            warnings.append(f"'{ident}' contains the class word '{cls}': pick a word unrelated to it")
        if ident != low:
            warnings.append(f"CLIP ignores case: '{ident}' is read as '{low}'")
        if not ident.isascii():
            warnings.append("non-ASCII letters often split into many tokens: prefer plain a–z")
        if ident.isdigit():
            warnings.append("a number alone is weak: numbers already mean things (years, counts)")
    token_count: int | None = None
    if tokenizer is not None and ident and not errors:
        try:
            pieces = _tokens(tokenizer, ident)
            token_count = len(pieces)
            if token_count > 1:
                shown = " + ".join(p.replace("</w>", "") for p in pieces)
                warnings.append(f"'{ident}' splits into {token_count} tokens ({shown}): "
                                "a single-token identifier learns faster and cleaner")
        except Exception as exc:  # noqa: BLE001 - report, never crash the wizard
            warnings.append(f"could not tokenize the identifier ({type(exc).__name__}); syntax checks only")
    suggestions = _suggest(ident, cls, tokenizer) if (errors or warnings) else []
    return IdentifierLint(ok=not errors, errors=errors, warnings=warnings, suggestions=suggestions,
                          prompt=prompt, token_count=token_count)
