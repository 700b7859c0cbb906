"""Every input's stated bound, in one place: each is checked before the work it would make."""

from __future__ import annotations

# The photo folder: entries are counted before any is opened. A DreamBooth set is 8-40 photos; a folder of
# thousands is a camera roll picked by mistake, and checking it would take minutes for nothing.
MAX_PHOTO_FILES = 1000
# One photo file: more than any phone or camera writes (a bigger file is refused before it is opened).
MAX_PHOTO_FILE_BYTES = 200_000_000

# A job file: a few hundred bytes of settings.
MAX_JOBFILE_BYTES = 1 << 20

# A prompt pack: its bytes are checked before it is read, its styles and prompts once it is parsed.
MAX_PACK_BYTES = 1 << 20
MAX_STYLES = 200
MAX_PROMPT_CHARS = 1000
# Images the generate stage may be asked for in one job (styles × images per prompt, plus the bare-token ones).
MAX_IMAGES = 20_000

# Nesting of any JSON or TOML file we read (our own files are a few levels deep): deeper is refused as damage
# right after parsing, before anything walks or re-encodes it and runs out of stack.
MAX_NESTING = 32
